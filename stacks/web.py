"""The web page's hosting: a private S3 bucket behind a CloudFront distribution.

* The bucket blocks every public access, takes HTTPS requests only and encrypts at rest; CloudFront
  reads it through Origin Access Control (no public bucket policy, no website endpoint).
* The distribution redirects HTTP to HTTPS, serves ``index.html`` at ``/`` and adds security headers
  (a Content-Security-Policy that lets the page call only its API and show only the images bucket).
* A ``BucketDeployment`` copies ``web/`` and writes ``config.js``, which points the page at the API
  (``window.IMAGEGEN_CONFIG``). The API's URL is usually a token, resolved at deploy time. No API key
  is written there: a bucket behind a public CDN is no place for a secret, so when the API needs a
  key the page asks its user for one.

Nothing here needs Docker: the web files are a plain directory asset and the deployment's Lambda
layer ships inside aws-cdk-lib.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Token
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

#: The page's files (``index.html``, ``app.js``, ``styles.css``) in this checkout.
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
#: The configuration script the page loads before its module.
CONFIG_FILE = "config.js"
#: Where presigned image URLs point (S3, virtual-hosted or regional endpoints).
DEFAULT_IMAGE_SOURCES = ("https://*.amazonaws.com",)


def config_script(api_url: str, *, api_key_required: bool, sign_in: Mapping[str, str] | None = None) -> str:
    """The text of ``config.js``: ``window.IMAGEGEN_CONFIG = {apiUrl, apiKey, apiKeyRequired, auth}``;
    ``auth`` is ``{"kind": "cognito", "domain", "clientId", "scope"}`` when the page signs people in
    (``web/auth.js``), else null."""
    config = {
        "apiUrl": api_url,
        "apiKey": None,
        "apiKeyRequired": api_key_required,
        "auth": {"kind": "cognito", **sign_in} if sign_in else None,
    }
    return f"window.IMAGEGEN_CONFIG = {json.dumps(config)};\n"


def content_security_policy(
    api_url: str, image_sources: Sequence[str], sign_in_url: str | None = None
) -> str:
    """Scripts, styles and fonts from the page's own origin; fetch only to the API (and, with sign-in,
    the user pool's token endpoint); images from the page and the image bucket; no frames, plugins or
    form posts."""
    if not Token.is_unresolved(api_url) and not api_url.endswith("/"):
        api_url += "/"  # a source with a path ending in "/" matches every path under it
    if sign_in_url:
        api_url += f" {sign_in_url}/oauth2/token"
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "font-src 'self'",
            f"img-src 'self' data: {' '.join(image_sources)}",
            f"connect-src 'self' {api_url}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ]
    )


class WebConstruct(Construct):
    """Hosts the web page: private bucket + CloudFront (OAC) + the page's files and ``config.js``.

    :param api_url: the API's base URL (for example ``RestApi.url``; a token is fine).
    :param api_key_required: whether the API wants ``x-api-key``; the page then asks for the key.
    :param sign_in: the user pool's hosted ``domain`` URL, the page's ``clientId`` and ``scope``
        (``stacks/sign_in.py``): the page signs people in and calls the API with their ID token.
    :param access_logs_bucket: where the web bucket's S3 server access logs go (prefix ``web-bucket/``).
    :param distribution_logs_bucket: where CloudFront standard logs go (prefix ``web-cdn/``); this
        bucket must allow ACLs (CloudFront's log delivery writes with an ACL).
    :param image_sources: CSP ``img-src`` sources for the images' presigned URLs.
    :param domain_names: custom host names of the page (with ``certificate``).
    :param certificate: an ACM certificate in us-east-1 for ``domain_names``; with it viewers must
        use TLS 1.2 or later (the default ``*.cloudfront.net`` certificate cannot set a minimum).
    :param price_class: CloudFront price class (default: North America and Europe edges).
    :param destroy_on_removal: delete the bucket and its files with the stack (default: retain).
    :param web_dir: the directory to publish (default: ``web/`` of this checkout).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_url: str,
        api_key_required: bool,
        sign_in: Mapping[str, str] | None = None,
        access_logs_bucket: s3.IBucket | None = None,
        distribution_logs_bucket: s3.IBucket | None = None,
        image_sources: Sequence[str] = DEFAULT_IMAGE_SOURCES,
        domain_names: Sequence[str] = (),
        certificate: acm.ICertificate | None = None,
        price_class: cloudfront.PriceClass = cloudfront.PriceClass.PRICE_CLASS_100,
        destroy_on_removal: bool = False,
        web_dir: Path = WEB_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        if not (web_dir / "index.html").is_file():
            raise ValueError(f"{web_dir} has no index.html: it is not the web page's directory")
        if bool(domain_names) != (certificate is not None):
            raise ValueError("give domain_names and certificate together (or neither)")

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            public_read_access=False,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            server_access_logs_bucket=access_logs_bucket,
            server_access_logs_prefix="web-bucket/" if access_logs_bucket else None,
            removal_policy=RemovalPolicy.DESTROY if destroy_on_removal else RemovalPolicy.RETAIN,
            auto_delete_objects=destroy_on_removal,
        )

        self.response_headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment="imagegen web page: security headers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=content_security_policy(
                        api_url, image_sources, (sign_in or {}).get("domain")
                    ),
                    override=True,
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.STRICT_ORIGIN_WHEN_CROSS_ORIGIN,
                    override=True,
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True, override=True
                ),
            ),
            custom_headers_behavior=cloudfront.ResponseCustomHeadersBehavior(
                custom_headers=[
                    cloudfront.ResponseCustomHeader(
                        header="Permissions-Policy",
                        value="camera=(), microphone=(), geolocation=(), payment=()",
                        override=True,
                    )
                ]
            ),
        )

        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="imagegen web page",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self.response_headers,
                compress=True,
            ),
            domain_names=list(domain_names) or None,
            certificate=certificate,
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if certificate else None,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=price_class,
            enable_logging=distribution_logs_bucket is not None,
            log_bucket=distribution_logs_bucket,
            log_file_prefix="web-cdn/" if distribution_logs_bucket else None,
        )

        # The files have fixed names (no content hashes), so browsers revalidate them and every
        # deployment invalidates the distribution's cache.
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Files",
            sources=[
                s3deploy.Source.asset(str(web_dir), exclude=[CONFIG_FILE, ".*"]),
                s3deploy.Source.data(
                    CONFIG_FILE, config_script(api_url, api_key_required=api_key_required, sign_in=sign_in)
                ),
            ],
            destination_bucket=self.bucket,
            cache_control=[s3deploy.CacheControl.no_cache()],
            distribution=self.distribution,
            distribution_paths=["/*"],
            prune=True,
            memory_limit=256,
        )

        host = domain_names[0] if domain_names else self.distribution.distribution_domain_name
        #: The page's address (a token until deployed); the API must allow it as a CORS origin.
        self.url = f"https://{host}/"
