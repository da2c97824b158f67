"""The storage construct (``stacks/storage.py``) in the synthesized stack: the images bucket and the
access-logs bucket, by default and in the variant deployment."""

from __future__ import annotations

from aws_cdk.assertions import Match

from tests.infra.stack_template import images_bucket_id
from tests.infra.synthesis import Synthesized


def test_images_bucket_is_private_encrypted_logged_and_expires_images(synthesized: Synthesized) -> None:
    template = synthesized.template
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": {
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "LoggingConfiguration": {
                    "DestinationBucketName": {"Ref": Match.any_value()},
                    "LogFilePrefix": "images-bucket/",
                },
                "LifecycleConfiguration": {
                    "Rules": Match.array_with(
                        [
                            Match.object_like(
                                {"Id": "expire-generated-images", "Status": "Enabled", "ExpirationInDays": 30}
                            )
                        ]
                    )
                },
                "VersioningConfiguration": Match.absent(),
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    # Auto-delete is off by default: no custom resource empties the bucket.
    assert not synthesized.resources("Custom::S3AutoDeleteObjects")


def test_images_bucket_policy_denies_plain_http(synthesized: Synthesized) -> None:
    bucket = images_bucket_id(synthesized)
    synthesized.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_access_logs_bucket_is_private_and_receives_the_images_bucket_logs(synthesized: Synthesized) -> None:
    images = synthesized.template_json["Resources"][images_bucket_id(synthesized)]
    logs_id = images["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    logs = synthesized.template_json["Resources"][logs_id]["Properties"]
    assert logs["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert logs["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}  # CloudFront logs
    assert logs["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}


def test_variant_bucket_is_versioned_expires_after_the_configured_days_and_is_destroyed(
    variant: Synthesized,
) -> None:
    bucket = variant.template_json["Resources"][images_bucket_id(variant)]
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-generated-images"]["ExpirationInDays"] == 7
    assert rules["expire-generated-images"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert rules["remove-expired-delete-markers"]["ExpiredObjectDeleteMarker"] is True
    assert bucket["DeletionPolicy"] == "Delete"
    assert variant.resources("Custom::S3AutoDeleteObjects")
