//! Who is calling (SPEC §11): the `x-api-key` header against the configured keys' SHA-256 digests, and the
//! environment the request acts in (`X-Environment-ID`, or the key's single environment).
//!
//! The presented key is hashed with SHA-256 and the digest compared with every configured digest in constant
//! time (`subtle`), all of them, so neither the comparison nor the number of comparisons depends on how much
//! of a key matches. The key itself is never stored, logged or echoed; only the key's `name` is.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::response::ApiError;
use crate::config::ApiKeyConfig;
use crate::job::Checkpoint;

/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The header naming the environment a request acts in.
pub const ENVIRONMENT_HEADER: &str = "x-environment-id";

/// The configured keys, by SHA-256 digest.
pub struct Keys {
    keys: Vec<([u8; 32], ApiKeyConfig)>,
}

impl Keys {
    /// The keys of `[[api.keys]]` (their `sha256` was checked at load: 64 hex digits).
    pub fn new(configured: &[ApiKeyConfig]) -> Keys {
        let keys = configured
            .iter()
            .map(|k| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(&k.sha256, &mut digest)
                    .expect("api.keys[].sha256 is validated at load");
                (digest, k.clone())
            })
            .collect();
        Keys { keys }
    }

    /// The configured key whose digest is the SHA-256 of `presented`, if any.
    pub fn find(&self, presented: &[u8]) -> Option<&ApiKeyConfig> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for (d, key) in &self.keys {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        found
    }

    /// The caller of a request: 401 when `x-api-key` is missing or matches no configured key.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller<'_>, ApiError> {
        let Some(presented) = headers.get(API_KEY_HEADER) else {
            return Err(ApiError::unauthorized(format!(
                "missing API key: send it in the `{API_KEY_HEADER}` header"
            )));
        };
        match self.find(presented.as_bytes()) {
            Some(key) => Ok(Caller { key }),
            None => Err(ApiError::unauthorized("unknown API key".into())),
        }
    }
}

/// The environments a read request may see: the one `X-Environment-ID` names, or every one of the key's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    One(String),
    Key,
}

/// An authenticated caller: the key it presented (tenant and environments).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub key: &'a ApiKeyConfig,
}

impl Caller<'_> {
    /// The key's name, for logs.
    pub fn name(&self) -> &str {
        &self.key.name
    }

    /// The tenant every request of this caller acts for.
    pub fn tenant(&self) -> &str {
        &self.key.tenant_id
    }

    /// Whether the key covers `environment` (`["*"]` covers every one).
    pub fn allows(&self, environment: &str) -> bool {
        self.key
            .environments
            .iter()
            .any(|e| e == "*" || e == environment)
    }

    /// The scope of a read: `X-Environment-ID` when sent (403 when the key does not cover it), else every
    /// environment of the key.
    pub fn scope(&self, header: Option<&str>) -> Result<Scope, ApiError> {
        match header {
            None => Ok(Scope::Key),
            Some(e) if self.allows(e) => Ok(Scope::One(e.to_string())),
            Some(e) => Err(self.outside(e)),
        }
    }

    /// Whether the caller may see the job: the key's tenant, an environment of the scope.
    pub fn sees(&self, cp: &Checkpoint, scope: &Scope) -> bool {
        let env = cp.spec.environment_id.as_str();
        cp.spec.tenant_id == self.key.tenant_id
            && match scope {
                Scope::One(e) => e == env,
                Scope::Key => self.allows(env),
            }
    }

    /// The environment a new job runs in: `X-Environment-ID`, else the body's `environment_id`, else the key's
    /// single environment. Errors: the two given and different (400), one the key does not cover (403), none
    /// while the key covers several (400). All name `environment_id`.
    pub fn environment(
        &self,
        header: Option<&str>,
        body: Option<&str>,
    ) -> Result<String, ApiError> {
        let chosen = match (header, body) {
            (Some(h), Some(b)) if h != b => {
                return Err(ApiError::bad_request(
                    format!(
                        "field `environment_id`: {b:?} contradicts the {ENVIRONMENT_HEADER} header ({h:?}); send one"
                    ),
                    Some("environment_id"),
                ));
            }
            (Some(e), _) | (None, Some(e)) => e.to_string(),
            (None, None) => match self.key.environments.as_slice() {
                [only] if only != "*" => only.clone(),
                _ => {
                    return Err(ApiError::bad_request(
                        format!(
                            "field `environment_id`: required: the API key covers several environments; name one \
                             in the {ENVIRONMENT_HEADER} header"
                        ),
                        Some("environment_id"),
                    ));
                }
            },
        };
        if self.allows(&chosen) {
            Ok(chosen)
        } else {
            Err(self.outside(&chosen))
        }
    }

    fn outside(&self, environment: &str) -> ApiError {
        ApiError::forbidden(
            format!(
                "environment {environment:?} is not one of the API key's environments ({})",
                self.key.environments.join(", ")
            ),
            Some("environment_id"),
        )
    }
}

/// `X-Environment-ID`, when sent: 400 when it is empty or not visible ASCII.
pub fn environment_header(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(v) = headers.get(ENVIRONMENT_HEADER) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim())),
        _ => Err(ApiError::bad_request(
            format!("header {ENVIRONMENT_HEADER}: must be a non-empty environment id"),
            Some("environment_id"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn sha(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    fn key(name: &str, secret: &str, tenant: &str, envs: &[&str]) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.into(),
            sha256: sha(secret),
            tenant_id: tenant.into(),
            environments: envs.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn keys_match_by_digest_only() {
        let mut upper = key("b", "key-b", "t2", &["*"]);
        upper.sha256 = upper.sha256.to_uppercase();
        let keys = Keys::new(&[key("a", "key-a", "t1", &["e1"]), upper]);
        assert_eq!(keys.find(b"key-a").unwrap().name, "a");
        assert_eq!(
            keys.find(b"key-b").unwrap().name,
            "b",
            "hex digits in either case"
        );
        assert!(keys.find(b"key-").is_none());
        assert!(keys.find(b"key-a ").is_none());
        assert!(keys.find(b"").is_none());
        assert!(
            keys.find(sha("key-a").as_bytes()).is_none(),
            "the digest is not a key"
        );
        assert!(Keys::new(&[]).find(b"key-a").is_none());
    }

    #[test]
    fn a_missing_or_unknown_key_is_401_and_the_key_is_not_echoed() {
        let keys = Keys::new(&[key("a", "key-a", "t1", &["e1"])]);
        let e = keys.caller(&headers(&[])).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.error.contains("x-api-key"), "{}", e.error);
        let e = keys
            .caller(&headers(&[(API_KEY_HEADER, "guess-123")]))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(!e.error.contains("guess-123"));
        let c = keys.caller(&headers(&[(API_KEY_HEADER, "key-a")])).unwrap();
        assert_eq!((c.name(), c.tenant()), ("a", "t1"));
    }

    #[test]
    fn the_environment_of_a_new_job() {
        let single = key("a", "k", "t", &["e1"]);
        let several = key("b", "k2", "t", &["e1", "e2"]);
        let every = key("c", "k3", "t", &["*"]);
        let (single, several, every) = (
            Caller { key: &single },
            Caller { key: &several },
            Caller { key: &every },
        );
        let status = |r: Result<String, ApiError>| r.map_err(|e| (e.status, e.field));
        let bad = Err((StatusCode::BAD_REQUEST, Some("environment_id".to_string())));
        let forbidden = Err((StatusCode::FORBIDDEN, Some("environment_id".to_string())));
        assert_eq!(status(single.environment(None, None)), Ok("e1".into()));
        assert_eq!(
            status(single.environment(Some("e1"), None)),
            Ok("e1".into())
        );
        assert_eq!(
            status(single.environment(None, Some("e1"))),
            Ok("e1".into())
        );
        assert_eq!(status(single.environment(Some("e2"), None)), forbidden);
        assert_eq!(status(single.environment(None, Some("e2"))), forbidden);
        assert_eq!(status(single.environment(Some("e1"), Some("e2"))), bad);
        assert_eq!(status(several.environment(None, None)), bad);
        assert_eq!(
            status(several.environment(Some("e2"), None)),
            Ok("e2".into())
        );
        assert_eq!(status(every.environment(None, None)), bad);
        assert_eq!(
            status(every.environment(Some("any"), None)),
            Ok("any".into())
        );
    }

    #[test]
    fn a_caller_sees_its_tenants_jobs_in_its_environments() {
        let mut cp = crate::job::tests::checkpoint();
        cp.spec.tenant_id = "t".into();
        cp.spec.environment_id = "e1".into();
        let k = key("a", "k", "t", &["e1", "e2"]);
        let c = Caller { key: &k };
        assert!(c.sees(&cp, &Scope::Key));
        assert!(c.sees(&cp, &c.scope(Some("e1")).unwrap()));
        assert!(!c.sees(&cp, &c.scope(Some("e2")).unwrap()));
        assert_eq!(
            c.scope(Some("e3")).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let other = key("b", "k2", "u", &["*"]);
        assert!(
            !Caller { key: &other }.sees(&cp, &Scope::Key),
            "another tenant"
        );
        let narrow = key("n", "k3", "t", &["e2"]);
        assert!(
            !Caller { key: &narrow }.sees(&cp, &Scope::Key),
            "another environment"
        );
    }

    #[test]
    fn the_environment_header_must_be_an_id() {
        assert_eq!(environment_header(&headers(&[])).unwrap(), None);
        assert_eq!(
            environment_header(&headers(&[(ENVIRONMENT_HEADER, "e1")])).unwrap(),
            Some("e1")
        );
        let e = environment_header(&headers(&[(ENVIRONMENT_HEADER, " ")])).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
