"""Sign-in for the page and the API (``imagegen:apiAuth=cognito``): an Amazon Cognito user pool, a
public app client for the authorization-code flow with PKCE, and a Cognito-hosted domain.

Every route of the API (and of the OpenAI-compatible API) is then authorized by a Cognito user pool
authorizer: API Gateway checks the ID token in ``Authorization`` and puts its claims in the request
context, whose ``sub`` is the caller (``core/tenancy.py``). Choices (docs/decisions.md, "Sign-in"):

* **Administrators create users** (no self sign-up): anyone on the internet signing up could spend the
  account's Bedrock budget. ``aws cognito-idp admin-create-user`` invites a user by e-mail.
* **Passwords of 12 or more characters** with lower and upper case, digits and symbols (cdk-nag's COG1
  asks for the last four), temporary passwords valid 3 days.
* **MFA required, TOTP only** (an authenticator app): SMS would need an SNS role and spending limits and
  is open to SIM swapping and toll fraud; e-mail OTP needs the Plus feature plan.
* **The Essentials feature plan**, without threat protection (``AdvancedSecurityMode``, cdk-nag COG3):
  threat protection needs the Plus plan, priced per monthly active user; acknowledged in stacks/nag.py.
* **A public client** (no secret: a page cannot keep one), the authorization-code grant only (no
  implicit grant: tokens never in a URL), scopes ``openid email``, the page's address as its only
  callback and sign-out URL, ID tokens valid 1 hour, refresh tokens 30 days, token revocation on, and
  ``PreventUserExistenceErrors``.
* **A Cognito-hosted domain** ``<prefix>.auth.<region>.amazoncognito.com`` whose prefix defaults to
  ``imagegen-`` and the stack's own id (unique per stack; a prefix may not contain ``aws``, ``amazon``
  or ``cognito``), or ``imagegen:cognitoDomainPrefix``.
"""

from __future__ import annotations

from aws_cdk import Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from constructs import Construct

#: The OAuth 2.0 scopes the page asks for: an ID token with the user's ``sub`` and e-mail.
SCOPES = (cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL)
ID_TOKEN_VALIDITY = Duration.hours(1)
REFRESH_TOKEN_VALIDITY = Duration.days(30)
PASSWORD_MIN_LENGTH = 12


class UserSignIn(Construct):
    """The user pool, its hosted domain and (once the page's address is known) the page's client.

    :param domain_prefix: the hosted domain's prefix; None: ``imagegen-`` and the stack's id.
    :param destroy_on_removal: delete the pool with the stack (otherwise it is retained, with
        deletion protection on).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain_prefix: str | None = None,
        destroy_on_removal: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "Users",
            user_pool_name=None,
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            password_policy=cognito.PasswordPolicy(
                min_length=PASSWORD_MIN_LENGTH,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.ESSENTIALS,
            deletion_protection=not destroy_on_removal,
            removal_policy=RemovalPolicy.DESTROY if destroy_on_removal else RemovalPolicy.RETAIN,
        )
        stack = Stack.of(self)
        prefix = domain_prefix or Fn.join("-", ["imagegen", Fn.select(2, Fn.split("/", stack.stack_id))])
        self.domain = self.user_pool.add_domain(
            "Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=prefix)
        )
        #: The hosted domain's base URL (``/oauth2/authorize``, ``/oauth2/token``, ``/logout`` under it).
        self.domain_url = self.domain.base_url()
        self.client: cognito.UserPoolClient | None = None

    def add_page_client(self, page_url: str) -> cognito.UserPoolClient:
        """The page's client: authorization code with PKCE, no secret, ``page_url`` its only callback."""
        self.client = self.user_pool.add_client(
            "Page",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True, implicit_code_grant=False),
                scopes=list(SCOPES),
                callback_urls=[page_url],
                logout_urls=[page_url],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
            id_token_validity=ID_TOKEN_VALIDITY,
            access_token_validity=ID_TOKEN_VALIDITY,
            refresh_token_validity=REFRESH_TOKEN_VALIDITY,
        )
        return self.client

    def authorizer(self, scope: Construct, construct_id: str) -> apigw.CognitoUserPoolsAuthorizer:
        """A user pool authorizer for one REST API (an authorizer belongs to one API): the ID token in
        ``Authorization`` (no scopes on the methods: API Gateway then expects an ID token)."""
        return apigw.CognitoUserPoolsAuthorizer(
            scope,
            construct_id,
            cognito_user_pools=[self.user_pool],
            identity_source=apigw.IdentitySource.header("Authorization"),
            results_cache_ttl=Duration.minutes(5),
        )
