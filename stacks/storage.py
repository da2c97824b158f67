"""Where images and manifests live, and where the access logs of the app's buckets go.

* The images bucket blocks every public access, takes HTTPS requests only, encrypts with S3-managed
  keys, and expires generated objects after ``image_expiration_days`` (with versioning on, old versions
  and delete markers go too). Images are read through presigned URLs, never publicly.
* The logs bucket receives S3 server access logs (prefix per bucket) and, when the web page is deployed,
  CloudFront standard logs: those are delivered with an ACL, so this bucket, and only this one, keeps
  object-writer ownership (no public access either). Logs expire after 90 days.
* Both buckets are retained when the stack is deleted unless ``destroy_on_removal`` is set, which also
  turns on auto-deletion of their objects.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

#: Access logs are kept this long.
LOG_EXPIRATION = Duration.days(90)


class ImageStorage(Construct):
    """The images bucket and the access-logs bucket.

    :param image_expiration_days: generated images and manifests are deleted after this many days.
    :param versioned: keep object versions in the images bucket.
    :param destroy_on_removal: delete the buckets and their objects with the stack.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image_expiration_days: int,
        versioned: bool = False,
        destroy_on_removal: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.DESTROY if destroy_on_removal else RemovalPolicy.RETAIN

        self.logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=LOG_EXPIRATION)],
            removal_policy=removal,
            auto_delete_objects=destroy_on_removal,
        )

        self.images_bucket = s3.Bucket(
            self,
            "Images",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            event_bridge_enabled=True,  # uploads under batches/ start the batch workflow
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=versioned,
            server_access_logs_bucket=self.logs_bucket,
            server_access_logs_prefix="images-bucket/",
            lifecycle_rules=_image_lifecycle(Duration.days(image_expiration_days), versioned=versioned),
            removal_policy=removal,
            auto_delete_objects=destroy_on_removal,
        )


def _image_lifecycle(expiration: Duration, *, versioned: bool) -> list[s3.LifecycleRule]:
    rules = [
        s3.LifecycleRule(
            id="expire-generated-images",
            expiration=expiration,
            noncurrent_version_expiration=Duration.days(1) if versioned else None,
            abort_incomplete_multipart_upload_after=Duration.days(1),
        )
    ]
    if versioned:  # an expired current version leaves a delete marker; remove those once alone
        rules.append(s3.LifecycleRule(id="remove-expired-delete-markers", expired_object_delete_marker=True))
    return rules
