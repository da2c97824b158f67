// Sign-in for the page when the deployment uses an Amazon Cognito user pool (imagegen:apiAuth=cognito).
//
// config.js says so: window.IMAGEGEN_CONFIG.auth = {kind: "cognito", domain, clientId, scope}. The page
// then signs people in with the user pool's hosted pages and the OAuth 2.0 authorization-code flow with
// PKCE (RFC 7636, method S256), as a public client (no secret):
//   1. Sign in: a random code_verifier and state are kept in sessionStorage; the browser goes to
//      <domain>/oauth2/authorize?response_type=code&client_id&redirect_uri&scope&state
//      &code_challenge_method=S256&code_challenge=BASE64URL(SHA-256(code_verifier)).
//   2. Back at this page with ?code&state: the state must be the one kept; the code is exchanged at
//      <domain>/oauth2/token (grant_type=authorization_code, client_id, code, redirect_uri,
//      code_verifier) for an ID token, an access token and a refresh token; the query is removed from
//      the address bar.
//   3. Every API call sends Authorization: Bearer <ID token> (the API's user pool authorizer reads the
//      ID token: its methods have no scopes); a token about to expire is renewed with the refresh token
//      (grant_type=refresh_token).
//   4. Sign out forgets the tokens and goes to <domain>/logout?client_id&logout_uri.
// Tokens are kept in sessionStorage: they are gone with the tab. Without auth in config.js nothing here
// does anything (API key or open deployments).
// Endpoints: https://docs.aws.amazon.com/cognito/latest/developerguide/authorization-endpoint.html,
// .../token-endpoint.html, .../logout-endpoint.html (read 2026-11-30).

const TOKENS = "imagegen.auth.tokens";
const PENDING = "imagegen.auth.pending";
/** Renew an ID token this long before it expires. */
const RENEW_BEFORE_MS = 60 * 1000;

let settings = null;

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

function claimsOf(idToken) {
  try {
    const part = idToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

function loadTokens() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKENS) || "null");
  } catch {
    return null;
  }
}

function keepTokens(answer, previous = null) {
  const tokens = {
    idToken: answer.id_token,
    refreshToken: answer.refresh_token || previous?.refreshToken || null,
    expiresAt: Date.now() + Number(answer.expires_in || 3600) * 1000,
  };
  sessionStorage.setItem(TOKENS, JSON.stringify(tokens));
  return tokens;
}

async function tokenRequest(fields) {
  const response = await fetch(`${settings.domain}/oauth2/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: settings.clientId, ...fields }).toString(),
    cache: "no-store",
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || !answer.id_token) {
    throw new Error(answer.error_description || answer.error || `sign-in failed (${response.status})`);
  }
  return answer;
}

/** Back from the hosted pages with ?code&state: exchange the code (once) and clean the address. */
async function completeSignIn() {
  const params = new URLSearchParams(window.location.search);
  const code = params.get("code");
  const returned = params.get("state");
  const failed = params.get("error");
  if (!code && !failed) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  window.history.replaceState(null, "", settings.redirectUri);
  if (failed) return `Sign-in was not completed: ${params.get("error_description") || failed}.`;
  if (!pending || pending.state !== returned) return "Sign-in was not completed (its state did not match); sign in again.";
  try {
    keepTokens(
      await tokenRequest({
        grant_type: "authorization_code",
        code,
        redirect_uri: settings.redirectUri,
        code_verifier: pending.verifier,
      }),
    );
    return null;
  } catch (error) {
    return `Sign-in failed: ${error.message}`;
  }
}

export async function signIn() {
  const verifier = randomText(48);
  const state = randomText(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: settings.clientId,
    redirect_uri: settings.redirectUri,
    scope: settings.scope,
    state,
    code_challenge_method: "S256",
    code_challenge: await challengeOf(verifier),
  });
  window.location.assign(`${settings.domain}/oauth2/authorize?${query}`);
}

export function signOut() {
  sessionStorage.removeItem(TOKENS);
  const query = new URLSearchParams({ client_id: settings.clientId, logout_uri: settings.redirectUri });
  window.location.assign(`${settings.domain}/logout?${query}`);
}

/** The headers that authenticate an API call: {authorization} when signed in, {} otherwise. */
export async function authHeaders() {
  if (!settings) return {};
  let tokens = loadTokens();
  if (tokens && tokens.expiresAt - RENEW_BEFORE_MS < Date.now()) {
    try {
      tokens = tokens.refreshToken
        ? keepTokens(await tokenRequest({ grant_type: "refresh_token", refresh_token: tokens.refreshToken }), tokens)
        : null;
    } catch {
      tokens = null;
    }
    if (!tokens) sessionStorage.removeItem(TOKENS);
  }
  return tokens ? { authorization: `Bearer ${tokens.idToken}` } : {};
}

function render(problem) {
  const bar = document.querySelector(".topbar-inner") || document.body;
  const box = document.createElement("div");
  box.className = "auth";
  box.id = "auth";
  const tokens = loadTokens();
  const status = document.createElement("span");
  status.className = "auth-status";
  status.setAttribute("role", "status");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "auth-button";
  if (tokens) {
    const claims = claimsOf(tokens.idToken);
    status.textContent = `Signed in as ${claims.email || claims["cognito:username"] || "you"}`;
    button.textContent = "Sign out";
    button.addEventListener("click", signOut);
  } else {
    status.textContent = problem || "Sign in to generate images and see your history.";
    button.textContent = "Sign in";
    button.addEventListener("click", () => signIn());
  }
  box.append(status, button);
  bar.append(box);
}

/**
 * Set up sign-in from config.js's `auth` (nothing to do without it): finish a sign-in that just came
 * back, and show who is signed in (or a Sign in button). Returns whether the page signs people in.
 */
export async function startAuth(auth) {
  if (!auth || auth.kind !== "cognito" || !auth.domain || !auth.clientId) return false;
  settings = {
    domain: String(auth.domain).replace(/\/+$/, ""),
    clientId: String(auth.clientId),
    scope: String(auth.scope || "openid email"),
    redirectUri: `${window.location.origin}${window.location.pathname}`,
  };
  render(await completeSignIn());
  return true;
}
