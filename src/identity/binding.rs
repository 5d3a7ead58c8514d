//! RFC 8705 §3: a certificate-bound token carries `cnf.x5t#S256`, which must equal the SHA-256
//! thumbprint of the client certificate the caller proved possession of.

use super::token::{TokenError, VerifiedToken};

/// Checks the token's binding against the verified certificate's thumbprint.
/// Returns whether the token is bound (and the binding holds).
pub fn check(token: &VerifiedToken, certificate: Option<&[u8; 32]>) -> Result<bool, TokenError> {
    match (token.bound_thumbprint.as_ref(), certificate) {
        (Some(expected), Some(actual)) if expected == actual => Ok(true),
        (Some(_), Some(_)) => Err(TokenError::BindingMismatch(
            "thumbprint differs from the client certificate".into(),
        )),
        (Some(_), None) => Err(TokenError::BindingMismatch(
            "no verified client certificate to bind to".into(),
        )),
        (None, _) if token.require_binding => Err(TokenError::BindingRequired),
        (None, _) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(bound: Option<[u8; 32]>, require: bool) -> VerifiedToken {
        VerifiedToken {
            issuer: "i".into(),
            subject: None,
            client_id: None,
            client_principal: None,
            scopes: vec![],
            user: None,
            actor: None,
            bound_thumbprint: bound,
            require_binding: require,
            valid_until: 0,
            svid: None,
            expires_at: 0,
            jti: None,
            issued_at: None,
            status: None,
        }
    }

    #[test]
    fn binding_rules() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert_eq!(check(&token(Some(a), false), Some(&a)), Ok(true));
        assert!(matches!(
            check(&token(Some(a), false), Some(&b)),
            Err(TokenError::BindingMismatch(_))
        ));
        assert!(matches!(
            check(&token(Some(a), false), None),
            Err(TokenError::BindingMismatch(_))
        ));
        assert_eq!(
            check(&token(None, true), Some(&a)),
            Err(TokenError::BindingRequired)
        );
        assert_eq!(check(&token(None, false), Some(&a)), Ok(false));
    }
}
