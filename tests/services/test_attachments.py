"""What a file's first bytes say it is, and what its name becomes."""

from __future__ import annotations

import pytest

from formrelay.services import attachments as files
from formrelay.services.attachments import UploadPolicy
from formrelay.services.errors import SubmissionRejected

from ..uploads import PDF, PNG


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (PDF, "pdf"),
        (PNG, "png"),
        (b"MZ\x90\x00" + b"\x00" * 60, "executable"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 60, "executable"),
        (b"#!/usr/bin/env python\nprint(1)\n", "script"),
        (b"<?php echo 1; ?>", "script"),
        (b"<!DOCTYPE html><p>hi", "html"),
        (b"\xef\xbb\xbf  <!-- x --><script>alert(1)</script>", "html"),
        (b"<a href='x'>link</a>", "html"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "svg"),
        (b"<svg onload=alert(1)>", "svg"),
        (b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"></html>', "html"),
        (b'<?xml version="1.0"?><invoice><total>3</total></invoice>', None),
        (b"name,email\nAnn,ann@example.org\n", None),
        (b"a < b and b > c", None),
        (b"", None),
    ],
)
def test_sniff_names_the_content(head, kind):
    assert files.sniff(head) == kind


DEFAULT = UploadPolicy.of(
    max_file_mb=10, max_total_mb=25, max_files=5, allowed_types="pdf,png,jpg,txt,csv,xml,docx"
)


@pytest.mark.parametrize(
    ("name", "head", "content_type"),
    [
        ("cv.pdf", PDF, "application/pdf"),
        ("photo.PNG", PNG, "image/png"),
        ("notes.txt", b"plain words", "text/plain"),
        ("list.csv", b"a,b\n1,2\n", "text/csv"),
        ("invoice.xml", b'<?xml version="1.0"?><invoice/>', "application/xml"),
    ],
)
def test_content_that_agrees_with_its_name_is_taken(name, head, content_type):
    assert files.check_content(DEFAULT, "f", name, head) == content_type


@pytest.mark.parametrize(
    ("name", "head", "says"),
    [
        ("cv.pdf", b"not a pdf at all", "not the .pdf content its name says"),
        ("photo.png", PDF, "PDF content, not .png"),
        ("notes.txt", b"<html><body>", "an HTML page"),
        ("data.xml", b"<svg onload=alert(1)>", "an SVG image (which can hold scripts)"),
        ("run.txt", b"#!/bin/sh", "a script"),
        ("setup.pdf", b"MZ" + b"\x00" * 60, "a program"),
    ],
)
def test_content_that_contradicts_its_name_or_runs_is_refused(name, head, says):
    with pytest.raises(SubmissionRejected) as refused:
        files.check_content(DEFAULT, "f", name, head)
    assert refused.value.code == "FILE_TYPE_NOT_ALLOWED"
    assert refused.value.field == "f"
    assert f"{name}: this file is {says};" in refused.value.message


def test_any_type_still_refuses_programs_and_pages_unless_listed_by_name():
    anything = UploadPolicy.of(max_file_mb=1, max_total_mb=1, max_files=1, allowed_types="*")
    assert files.check_extension(anything, "f", "model.stl") == "stl"
    for name in ("setup.exe", "page.html", "logo.svg", "run.sh"):
        with pytest.raises(SubmissionRejected):
            files.check_extension(anything, "f", name)
    listed = UploadPolicy.of(max_file_mb=1, max_total_mb=1, max_files=1, allowed_types="*,html")
    assert files.check_content(listed, "f", "page.html", b"<!doctype html>") == "text/html"


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\cv.pdf", "cv.pdf"),
        ("cv\x00.pdf", "cv.pdf"),
        ("e\u0301te\u0301.pdf", "été.pdf"),  # NFC
        ("a\u202egpj.exe", "agpj.exe"),
        ('what?*<>|":.pdf', "what_______.pdf"),
        ("  .hidden  ", "hidden"),
        ("nul.txt", "_nul.txt"),
        ("", "file"),
        ("\x00\x01", "file"),
        ("x" * 300, "x" * 200),
        ("y" * 300 + ".jpeg", "y" * 195 + ".jpeg"),
    ],
)
def test_filenames_are_sanitised(raw, kept):
    assert files.sanitise_filename(raw) == kept


@pytest.mark.parametrize(
    ("raw", "stored"),
    [("pdf, .PNG jpg", "jpg,pdf,png"), ("*", "*"), ("docx;xlsx", "docx,xlsx")],
)
def test_allowed_types_are_kept_tidy(raw, stored):
    assert files.clean_types(raw) == stored
