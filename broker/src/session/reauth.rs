//! MQTT 5 re-authentication with a fresh JWT: a client that connected with
//! authentication method `jwt` sends AUTH (reason 0x19, the same method,
//! the new token as authentication data) before its token expires. A token
//! for the same user moves the session's end to the new `exp` and answers
//! AUTH 0x00; anything else ends the connection (DISCONNECT 0x8C for a
//! wrong method, 0x87 for a token that does not verify or names another
//! user). New roles or rules in the token take effect like a policy change.

use std::sync::Arc;

use tokio::time::Instant;
use warden_codec::{Auth, Packet, Properties, PropertySet, ReasonCode};

use crate::auth::jwt::METHOD;
use crate::session::handler::{End, Handler};

impl<S: crate::session::connection::Transport> Handler<S> {
    pub(crate) fn on_reauth(&mut self, auth: &Auth) -> Result<(), End> {
        if auth.reason != ReasonCode::RE_AUTHENTICATE.value() {
            return Err(End::Violation(ReasonCode::PROTOCOL_ERROR.value()));
        }
        if auth.properties.authentication_method.as_deref() != Some(METHOD) {
            return Err(End::Violation(
                ReasonCode::BAD_AUTHENTICATION_METHOD.value(),
            ));
        }
        let refused = |reason: &str| {
            tracing::info!(client_id = %self.session.client_id, username = self.session.owner.username().unwrap_or(""), %reason, "re-authentication refused");
            End::Violation(ReasonCode::NOT_AUTHORIZED.value())
        };
        let Some(verifier) = self.broker.jwt.load_full() else {
            return Err(refused("JWT authentication is no longer configured"));
        };
        let data = auth
            .properties
            .authentication_data
            .as_deref()
            .unwrap_or_default();
        let token = std::str::from_utf8(data).map_err(|_| refused("malformed token"))?;
        let grant = verifier
            .verify(token, self.session.owner.username(), true)
            .map_err(refused)?;
        if self.session.owner.username() != Some(grant.username.as_str()) {
            return Err(refused("username does not match the token"));
        }
        let changed = {
            let mut st = self.session.state.lock();
            // What the auth service gave the session (all_must_allow with
            // JWT and auth.http) stays; only the token's part is renewed.
            let grant = match &st.token {
                Some(old) => old.renewed_by(grant),
                None => grant,
            };
            let changed = match &st.token {
                Some(old) => old.roles != grant.roles || old.rules != grant.rules,
                None => true,
            };
            let rare = self.rare.get_or_insert_with(Box::default);
            let reauth = rare.token_deadline.is_some_and(|t| t.1);
            rare.token_deadline = Some((Instant::now() + grant.remaining(), reauth));
            st.token = Some(Arc::new(grant));
            changed
        };
        tracing::debug!(client_id = %self.session.client_id, "re-authenticated with a fresh token");
        if changed {
            let broker = Arc::clone(&self.broker);
            let session = Arc::clone(&self.session);
            tokio::spawn(async move {
                crate::policy_registry::refresh_session(&broker, &session).await;
            });
        }
        let properties = Properties::from(PropertySet {
            authentication_method: Some(METHOD.to_owned()),
            ..PropertySet::default()
        });
        self.send(&Packet::Auth(Auth {
            reason: ReasonCode::SUCCESS.value(),
            properties,
        }))
    }
}
