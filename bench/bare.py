"""The ceiling: a bare Flask endpoint answering 204, served exactly as formrelay is."""

from flask import Flask

app = Flask(__name__)


@app.post("/f/<key>")
def accept(key: str) -> tuple[str, int]:
    return "", 204


@app.get("/")
def index() -> str:
    return "ok"
