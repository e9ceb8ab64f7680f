"""moto's SES (session-wide) and the AWS isolation of tests/delivery/test_ses.py, shared."""

from ..delivery.test_ses import aws_isolated, moto_url  # noqa: F401  (fixtures)
