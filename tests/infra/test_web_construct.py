"""The web hosting construct, synthesized alone in a scratch stack (offline, no Docker)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from stacks.web import CONFIG_FILE, WEB_DIR, WebConstruct, config_script, content_security_policy
from tests.infra.synthesis import ENV, nag_findings

#: cdk-nag findings this construct cannot avoid; the stack acknowledges them (with these reasons).
#: CFR4: the default *.cloudfront.net certificate accepts TLSv1 (a custom domain + certificate fixes it).
#: IAM4/IAM5/L1: the BucketDeployment handler that aws-cdk-lib ships (its role, policy and runtime).
EXPECTED_NAG_ERRORS = {"AwsSolutions-CFR4", "AwsSolutions-IAM4", "AwsSolutions-IAM5", "AwsSolutions-L1"}
BUCKET_DEPLOYMENT_HANDLER = "Custom::CDKBucketDeployment"


def scratch_stack(outdir: Path) -> tuple[cdk.App, cdk.Stack]:
    app = cdk.App(outdir=str(outdir))
    return app, cdk.Stack(app, "WebOnly", env=ENV)


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, Path]:
    """A stack with only the construct; the API URL is a deploy-time value, as in the real stack."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = scratch_stack(outdir)
    api_url = cdk.CfnParameter(stack, "ApiUrl").value_as_string
    logs = s3.Bucket(stack, "Logs", object_ownership=s3.ObjectOwnership.OBJECT_WRITER, enforce_ssl=True)
    WebConstruct(
        stack,
        "Web",
        api_url=api_url,
        api_key_required=True,
        access_logs_bucket=logs,
        distribution_logs_bucket=logs,
    )
    assembly = app.synth()
    return Template.from_stack(stack), Path(assembly.directory)


def only(template: Template, resource_type: str) -> Mapping[str, Any]:
    resources = template.find_resources(resource_type)
    assert len(resources) == 1, f"expected one {resource_type}, found {sorted(resources)}"
    return next(iter(resources.values()))


def test_bucket_is_private_encrypted_and_ssl_only(synthesized: tuple[Template, Path]) -> None:
    template, _ = synthesized
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
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
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LoggingConfiguration": {"LogFilePrefix": "web-bucket/"},
            "WebsiteConfiguration": Match.absent(),
        },
    )
    policies = template.find_resources("AWS::S3::BucketPolicy")
    web_policy = next(p for p in policies.values() if "WebBucket" in p["Properties"]["Bucket"]["Ref"])
    statements = web_policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny"
        and s["Action"] == "s3:*"
        and s["Principal"] == {"AWS": "*"}
        and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )
    allows = [s for s in statements if s["Effect"] == "Allow"]
    # Only CloudFront may read, and only for this distribution (Origin Access Control).
    assert [s["Principal"] for s in allows] == [{"Service": "cloudfront.amazonaws.com"}]
    assert allows[0]["Action"] == "s3:GetObject"
    assert "AWS:SourceArn" in allows[0]["Condition"]["StringEquals"]


def test_distribution_reads_the_bucket_through_origin_access_control(
    synthesized: tuple[Template, Path],
) -> None:
    template, _ = synthesized
    template.has_resource_properties(
        "AWS::CloudFront::OriginAccessControl",
        {
            "OriginAccessControlConfig": {
                "OriginAccessControlOriginType": "s3",
                "SigningBehavior": "always",
                "SigningProtocol": "sigv4",
            }
        },
    )
    template.resource_count_is("AWS::CloudFront::CloudFrontOriginAccessIdentity", 0)
    origins = only(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]["Origins"]
    assert len(origins) == 1
    assert origins[0]["OriginAccessControlId"]["Fn::GetAtt"][1] == "Id"
    assert origins[0]["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    assert origins[0]["DomainName"]["Fn::GetAtt"][1] == "RegionalDomainName"  # not a website endpoint


def test_distribution_is_https_only_with_index_html_and_security_headers(
    synthesized: tuple[Template, Path],
) -> None:
    template, _ = synthesized
    template.has_resource_properties(
        "AWS::CloudFront::Distribution",
        {
            "DistributionConfig": {
                "DefaultRootObject": "index.html",
                "DefaultCacheBehavior": {
                    "ViewerProtocolPolicy": "redirect-to-https",
                    "AllowedMethods": ["GET", "HEAD"],
                    "ResponseHeadersPolicyId": {"Ref": Match.string_like_regexp("SecurityHeaders")},
                },
                "Logging": {"Prefix": "web-cdn/"},
            }
        },
    )
    headers = only(template, "AWS::CloudFront::ResponseHeadersPolicy")["Properties"]
    security = headers["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31_536_000
    assert security["FrameOptions"]["FrameOption"] == "DENY"
    assert security["ContentTypeOptions"] == {"Override": True}
    csp = security["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Join"][1]
    assert "connect-src 'self' " in csp[0] and csp[1] == {"Ref": "ApiUrl"}  # the page may call its API
    assert "script-src 'self'" in csp[0] and "frame-ancestors 'none'" in csp[2]


def test_files_and_config_js_are_deployed(synthesized: tuple[Template, Path]) -> None:
    template, assembly = synthesized
    deployment = only(template, "Custom::CDKBucketDeployment")["Properties"]
    assert deployment["DestinationBucketName"]["Ref"].startswith("WebBucket")
    assert deployment["DistributionPaths"] == ["/*"]  # every deployment invalidates the cache
    assert deployment["Prune"] is True
    assert deployment["SystemMetadata"] == {"cache-control": "no-cache"}

    files: dict[str, str] = {}
    for key, markers in zip(deployment["SourceObjectKeys"], deployment["SourceMarkers"], strict=True):
        asset_dir = assembly / f"asset.{key.removesuffix('.zip')}"
        for path in asset_dir.rglob("*"):
            if path.is_file():
                text = path.read_text()
                for marker, value in markers.items():
                    text = text.replace(marker, json.dumps(value))
                files[str(path.relative_to(asset_dir))] = text
    assert sorted(files) == sorted([CONFIG_FILE, "app.js", "auth.js", "index.html", "styles.css"])
    assert files["index.html"] == (WEB_DIR / "index.html").read_text()
    # config.js carries the API URL token (resolved at deploy time) and no API key.
    assert files[CONFIG_FILE] == (
        'window.IMAGEGEN_CONFIG = {"apiUrl": "{"Ref": "ApiUrl"}", "apiKey": null, "apiKeyRequired": true, "auth": null};\n'
    )


def test_synth_needs_no_docker(synthesized: tuple[Template, Path]) -> None:
    _, assembly = synthesized
    assets = json.loads((assembly / "WebOnly.assets.json").read_text())
    assert not assets.get("dockerImages")
    for asset in assets["files"].values():
        assert (assembly / asset["source"]["path"]).exists()


def test_config_script_and_csp() -> None:
    assert config_script("https://api.example.test/prod/", api_key_required=False) == (
        'window.IMAGEGEN_CONFIG = {"apiUrl": "https://api.example.test/prod/", "apiKey": null, '
        '"apiKeyRequired": false, "auth": null};\n'
    )
    csp = content_security_policy("https://api.example.test/prod", ["https://*.amazonaws.com"])
    assert "connect-src 'self' https://api.example.test/prod/;" in csp  # a path prefix, not one path
    assert "img-src 'self' data: https://*.amazonaws.com;" in csp


def test_rejects_a_directory_without_the_page(tmp_path: Path) -> None:
    _, stack = scratch_stack(tmp_path / "out")
    with pytest.raises(ValueError, match=r"no index\.html"):
        WebConstruct(
            stack, "Web", api_url="https://api.example.test/", api_key_required=False, web_dir=tmp_path
        )


def test_custom_domain_requires_tls_1_2(tmp_path: Path) -> None:
    _, stack = scratch_stack(tmp_path / "out")
    certificate = acm.Certificate.from_certificate_arn(
        stack, "Cert", "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
    )
    with pytest.raises(ValueError, match="together"):
        WebConstruct(
            stack,
            "Half",
            api_url="https://api.example.test/",
            api_key_required=False,
            certificate=certificate,
        )
    web = WebConstruct(
        stack,
        "Web",
        api_url="https://api.example.test/",
        api_key_required=False,
        domain_names=["images.example.test"],
        certificate=certificate,
    )
    assert web.url == "https://images.example.test/"
    Template.from_stack(stack).has_resource_properties(
        "AWS::CloudFront::Distribution",
        {
            "DistributionConfig": {
                "Aliases": ["images.example.test"],
                "ViewerCertificate": {
                    "MinimumProtocolVersion": "TLSv1.2_2021",
                    "SslSupportMethod": "sni-only",
                },
            }
        },
    )


def test_cdk_nag_finds_only_the_acknowledged_errors(tmp_path: Path) -> None:
    """With logs configured, AwsSolutions reports nothing about the bucket or distribution but CFR4;
    the rest is the BucketDeployment handler of aws-cdk-lib, which the stack acknowledges."""
    from cdk_nag import AwsSolutionsChecks

    app, stack = scratch_stack(tmp_path / "out")
    logs = s3.Bucket(stack, "Logs", object_ownership=s3.ObjectOwnership.OBJECT_WRITER, enforce_ssl=True)
    WebConstruct(
        stack,
        "Web",
        api_url="https://api.example.test/prod/",
        api_key_required=False,
        access_logs_bucket=logs,
        distribution_logs_bucket=logs,
    )
    cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks())
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    errors = nag_findings(tmp_path / "out", severity="error")
    assert set(errors) == EXPECTED_NAG_ERRORS
    assert errors.pop("AwsSolutions-CFR4") == {"WebOnly/Web/Distribution/Resource"}
    for rule, paths in errors.items():
        assert all(BUCKET_DEPLOYMENT_HANDLER in p for p in paths), (rule, paths)
