"""The churn seed's Lambda function, run by modelhost: pre-processing, the endpoint, the 0.39 threshold.

What changed from the seed, and why:
- the fitted transformers come from the function's artifact folder ($MODELHOST_FUNCTION_ARTIFACTS_DIR,
  filled from ``--artifact``) instead of ``s3.Object(bucket, key)``: the seed's S3 code works too when
  BUCKET and KEY are set (and AWS_ENDPOINT_URL_S3 names your S3-compatible store);
- the event is API Gateway's proxy event, so the customer record is its JSON body (the seed's test
  event was the record itself; both are accepted).
Everything else is the seed's code: the same boto3 call, ContentType text/csv, the same threshold.
"""

import json
import os
import pickle
import warnings

import boto3

warnings.simplefilter("ignore")

ENDPOINT_NAME = os.environ["ENDPOINT_NAME"]
runtime = boto3.client("runtime.sagemaker")
THRESHOLD = float(os.environ.get("THRESHOLD", "0.39"))


def _load_transformation():
    if os.environ.get("BUCKET"):
        s3 = boto3.resource("s3")
        return pickle.loads(s3.Object(os.environ["BUCKET"], os.environ["KEY"]).get()["Body"].read())
    with open(os.path.join(os.environ["MODELHOST_FUNCTION_ARTIFACTS_DIR"], "transformation.sav"), "rb") as f:
        return pickle.load(f)


trans = _load_transformation()  # once per instance, not per call


def lambda_handler(event, context):
    record = json.loads(event["body"]) if "httpMethod" in event else event
    payload = process_data(record)
    response = runtime.invoke_endpoint(EndpointName=ENDPOINT_NAME, ContentType="text/csv", Body=payload)
    result = json.loads(response["Body"].read().decode())
    if isinstance(result, list):  # one row in, one score out
        result = result[0]
    predicted_label = "True" if result > THRESHOLD else "False"
    return {"churn": predicted_label, "score": round(float(result), 4)}


def process_data(event):
    event = dict(event)
    event.pop("Phone", None)
    event["Area Code"] = int(event["Area Code"])
    obj_data = [[value for key, value in event.items() if key in trans["obj_cols"]]]
    num_data = [[value for key, value in event.items() if key in trans["num_cols"]]]

    obj_data = trans["One_Hot"].transform(obj_data).toarray()
    num_data = trans["scaler"].transform(num_data)

    obj_data = [str(i) for i in obj_data[0]]
    num_data = [str(i) for i in num_data[0]]

    data = obj_data + num_data
    return ",".join(data)
