//! Who may call the API and how often: API keys stored as hashes, each granted every project
//! or a list of them ([`ApiKeyGrant`]), a token bucket per key, and how long browsers may
//! cache a CORS preflight.

use crate::keys::Project;
use crate::manifest::Sha256Digest;

/// `Access-Control-Max-Age` of a CORS preflight answer: 600 s, so a changed list of allowed
/// origins reaches browsers within 10 minutes (Chromium caps the value at 2 hours, Firefox at
/// 24; the Fetch Standard, "CORS-preflight cache").
pub const CORS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether a request's `Host` header (`name[:port]`, `[v6]:port`) names the local server
/// listening on `listen`: the port must be the listen port, and the name `localhost` (for a
/// loopback or unspecified listen address) or an IP literal equal to the listen address (any
/// IP literal for an unspecified one, `0.0.0.0` or `::`). A missing port means 80.
///
/// A web page whose DNS name an attacker rebinds to 127.0.0.1 sends its own name as `Host`;
/// refusing every name but these keeps such pages from reading a local server's answers
/// (the defence the Chromium and Node.js inspector and Jupyter use against DNS rebinding).
#[must_use]
pub fn host_allowed(host: Option<&str>, listen: std::net::SocketAddr) -> bool {
    let Some(host) = host else { return false };
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((name, "")) => (name, None),
            Some((name, port)) => match port.strip_prefix(':') {
                Some(port) => (name, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port = match port {
        Some(port) => port.parse::<u16>().ok(),
        None => Some(80),
    };
    if port != Some(listen.port()) {
        return false;
    }
    let unspecified = listen.ip().is_unspecified();
    if name.eq_ignore_ascii_case("localhost") {
        return listen.ip().is_loopback() || unspecified;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| unspecified || ip == listen.ip())
}

/// Failed authentications one client address may make at once before it is refused (429)
/// whatever key it sends: 20.
pub const AUTH_FAILURE_BURST: f64 = 20.0;

/// Failed authentications per second one client address may sustain: 1. A guess of a
/// 128-bit key at that rate is hopeless; a mistyped key in a script recovers within seconds.
pub const AUTH_FAILURES_PER_SECOND: f64 = 1.0;

/// The stored form of an API key: lower-case hex SHA-256 of the bearer token's bytes. Keys are
/// configured and compared only in this form, so a leaked configuration reveals no key.
#[must_use]
pub fn api_key_hash(token: &str) -> String {
    Sha256Digest::of(token.as_bytes()).hex
}

/// Which projects an API key reaches: every one (an operator's key) or those listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    /// Every project.
    All,
    /// Only these projects (at least one).
    Projects(Vec<Project>),
}

impl KeyScope {
    /// Whether a request about `project` is allowed (otherwise 403 `forbidden`).
    #[must_use]
    pub fn allows(&self, project: &Project) -> bool {
        match self {
            Self::All => true,
            Self::Projects(projects) => projects.contains(project),
        }
    }

    /// The projects a search of images is limited to: the one it names, which the key must
    /// reach; without one, `None` (every project) for an operator key and the key's projects
    /// for another.
    ///
    /// # Errors
    /// [`ScopeError::Forbidden`] for a project the key does not reach.
    pub fn search_projects(
        &self,
        named: Option<&Project>,
    ) -> Result<Option<Vec<Project>>, ScopeError> {
        match (self, named) {
            (_, Some(project)) if self.allows(project) => Ok(Some(vec![project.clone()])),
            (_, Some(project)) => Err(ScopeError::Forbidden(project.clone())),
            (Self::All, None) => Ok(None),
            (Self::Projects(projects), None) => Ok(Some(projects.clone())),
        }
    }

    /// The project a list request (jobs, deliveries) is limited to: the one it
    /// names, which the key must reach; without one, every project for an operator key, and
    /// the key's project for a key of one project.
    ///
    /// # Errors
    /// [`ScopeError::Forbidden`] for a project the key does not reach;
    /// [`ScopeError::NameAProject`] when a key of several projects names none.
    pub fn list_project(&self, named: Option<&Project>) -> Result<Option<Project>, ScopeError> {
        match (self, named) {
            (_, Some(project)) if self.allows(project) => Ok(Some(project.clone())),
            (_, Some(project)) => Err(ScopeError::Forbidden(project.clone())),
            (Self::All, None) => Ok(None),
            (Self::Projects(projects), None) => match projects.as_slice() {
                [only] => Ok(Some(only.clone())),
                _ => Err(ScopeError::NameAProject),
            },
        }
    }
}

/// Why a key may not do what it asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The project is not among the key's.
    #[error("this API key does not reach project {0}")]
    Forbidden(Project),
    /// A list without `project` by a key of several projects.
    #[error("this API key reaches several projects: name one with `project=`")]
    NameAProject,
}

/// One accepted API key as configured: its hash ([`api_key_hash`]) and its scope, written
/// `HASH` (every project) or `HASH=project-a+project-b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyGrant {
    /// Lower-case hex SHA-256 of the key.
    pub hash: String,
    /// The projects it reaches.
    pub scope: KeyScope,
}

/// Why a configured key entry does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("API key entry {0:?}: write HASH (64 hex digits) or HASH=project+project")]
pub struct GrantError(pub String);

impl std::str::FromStr for ApiKeyGrant {
    type Err = GrantError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let bad = || GrantError(entry.to_owned());
        let (hash, projects) = match entry.split_once('=') {
            Some((hash, projects)) => (hash, Some(projects)),
            None => (entry, None),
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let scope = match projects {
            None => KeyScope::All,
            Some(list) => KeyScope::Projects(
                list.split('+')
                    .map(|p| Project::new(p).map_err(|_| bad()))
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Self {
            hash: hash.to_ascii_lowercase(),
            scope,
        })
    }
}

impl std::fmt::Display for ApiKeyGrant {
    /// The configured form, as [`str::parse`] reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hash)?;
        if let KeyScope::Projects(projects) = &self.scope {
            let names: Vec<&str> = projects.iter().map(Project::as_str).collect();
            write!(f, "={}", names.join("+"))?;
        }
        Ok(())
    }
}

/// A token bucket (the classic rate limiter: `capacity` requests at once, refilled at
/// `refill_per_second`), one per API key. Time is passed in, in seconds since any fixed origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    /// Largest burst.
    pub capacity: f64,
    /// Sustained requests per second.
    pub refill_per_second: f64,
    tokens: f64,
    last_s: f64,
}

impl TokenBucket {
    /// A full bucket at time `now_s`.
    #[must_use]
    pub fn new(capacity: f64, refill_per_second: f64, now_s: f64) -> Self {
        Self {
            capacity,
            refill_per_second,
            tokens: capacity,
            last_s: now_s,
        }
    }

    /// Whether a token could be taken at `now_s`, without taking it. `Err(retry_after_s)` as
    /// [`TokenBucket::try_take`].
    ///
    /// # Errors
    /// The wait in seconds when the bucket is empty.
    pub fn peek(&self, now_s: f64) -> Result<(), f64> {
        let mut copy = *self;
        copy.try_take(now_s)
    }

    /// Whether the bucket has refilled to capacity by `now_s` (a client that has stopped).
    #[must_use]
    pub fn is_full(&self, now_s: f64) -> bool {
        let elapsed = (now_s - self.last_s).max(0.0);
        self.tokens + elapsed * self.refill_per_second >= self.capacity
    }

    /// Takes one token at `now_s`. `Err(retry_after_s)` says how long until one is available.
    ///
    /// # Errors
    /// The wait in seconds when the bucket is empty.
    pub fn try_take(&mut self, now_s: f64) -> Result<(), f64> {
        let elapsed = (now_s - self.last_s).max(0.0);
        self.tokens = (self.tokens + elapsed * self.refill_per_second).min(self.capacity);
        self.last_s = now_s.max(self.last_s);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - self.tokens) / self.refill_per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_bursts_then_the_refill_rate() {
        let mut bucket = TokenBucket::new(3.0, 2.0, 100.0);
        assert!((0..3).all(|_| bucket.try_take(100.0).is_ok()));
        let wait = bucket.try_take(100.0).unwrap_err();
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        assert!(bucket.try_take(100.5).is_ok());
        assert!(bucket.try_take(100.5).is_err());
        assert!(
            (0..3).all(|_| bucket.try_take(200.0).is_ok()),
            "refills to capacity only"
        );
        assert!(bucket.try_take(200.0).is_err());
        assert!(bucket.peek(200.0).is_err() && bucket.peek(200.5).is_ok());
        assert!(!bucket.is_full(200.5) && bucket.is_full(201.5));
    }

    #[test]
    fn only_the_listen_address_and_localhost_are_answered() {
        let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"] {
            assert!(host_allowed(Some(host), loopback), "{host}");
        }
        for host in [
            "attacker.example:8080",
            "127.0.0.1:9000",
            "127.0.0.2:8080",
            "localhost",
            "localhost.attacker.example:8080",
            "[::1]:8080",
            "127.0.0.1:8080:8080",
            "",
        ] {
            assert!(!host_allowed(Some(host), loopback), "{host}");
        }
        assert!(!host_allowed(None, loopback));
        let v6: std::net::SocketAddr = "[::1]:80".parse().unwrap();
        assert!(host_allowed(Some("[::1]"), v6) && host_allowed(Some("[::1]:80"), v6));
        assert!(!host_allowed(Some("[::1"), v6));
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(host_allowed(Some("192.168.1.20:8080"), any));
        assert!(!host_allowed(Some("box.lan:8080"), any));
    }

    #[test]
    fn api_keys_are_stored_as_sha256_hex() {
        assert_eq!(
            api_key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn key_grants_read_their_scope_and_decide_lists() {
        let hash = api_key_hash("k");
        let all: ApiKeyGrant = hash.parse().unwrap();
        assert_eq!(all.scope, KeyScope::All);
        let palms: ApiKeyGrant = format!("{hash}=palms").parse().unwrap();
        let two: ApiKeyGrant = format!("{}=palms+oaks", hash.to_uppercase())
            .parse()
            .unwrap();
        assert_eq!(two.hash, hash);
        assert_eq!(two.to_string(), format!("{hash}=palms+oaks"));
        for bad in [
            "abc",
            "abc=palms",
            &format!("{hash}="),
            &format!("{hash}=Palms"),
        ] {
            assert!(bad.parse::<ApiKeyGrant>().is_err(), "{bad}");
        }
        let p = |name: &str| Project::new(name).unwrap();
        assert!(palms.scope.allows(&p("palms")) && !palms.scope.allows(&p("oaks")));
        assert!(all.scope.allows(&p("oaks")));
        assert_eq!(all.scope.list_project(None), Ok(None));
        assert_eq!(palms.scope.list_project(None), Ok(Some(p("palms"))));
        assert_eq!(
            palms.scope.list_project(Some(&p("oaks"))),
            Err(ScopeError::Forbidden(p("oaks")))
        );
        assert_eq!(two.scope.list_project(None), Err(ScopeError::NameAProject));
        assert_eq!(
            two.scope.list_project(Some(&p("oaks"))),
            Ok(Some(p("oaks")))
        );
    }
}
