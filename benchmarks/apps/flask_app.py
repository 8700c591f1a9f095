"""The seed tutorials' serving stack, as the baseline: a Flask app behind gunicorn sync workers.

    WORKLOADS_DIR=... WORKLOAD=sentiment MODEL_DIR=... gunicorn -w 2 --chdir benchmarks/apps flask_app:app

As in the tutorials' ``predictor.py``, the model is loaded when the module is imported, so every
gunicorn worker holds its own copy; ``/ping`` says whether it loaded and ``/invocations`` takes the
workload's canonical JSON (sentiment ``{"input": [{"text": ...}]}``, ner ``{"text": ...}``).
The model is loaded and run with the reference code in ``workloads.py``.
"""

import json
import os
import sys

import flask

sys.path.insert(0, os.environ["WORKLOADS_DIR"])
import workloads  # found through WORKLOADS_DIR

model = workloads.load(os.environ["WORKLOAD"], os.environ["MODEL_DIR"])
app = flask.Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping() -> flask.Response:
    status = 200 if model is not None else 404
    return flask.Response(response="\n", status=status, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def invocations() -> flask.Response:
    if flask.request.content_type != "application/json":
        return flask.Response(response="This predictor only supports JSON data", status=415, mimetype="text/plain")
    result = model.handle(flask.request.get_json())
    return flask.Response(response=json.dumps(result), status=200, mimetype="application/json")
