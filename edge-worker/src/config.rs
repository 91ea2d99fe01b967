//! The edge's configuration: every variable named, defaulted and documented once, in
//! [`VARIABLES`]. The hosts read it through a lookup (environment variables natively, vars
//! and secrets on Workers), tests hand it back as variables ([`Config::to_vars`]), and the
//! README's table is [`markdown_table`] (a test keeps them equal).

use std::time::Duration;

use tessera_core::access::ApiKeyGrant;
use tessera_core::presign::{Addressing, StorageTarget};
use tessera_core::search::DOWNLOAD_URL_LIFETIME;
use tessera_core::upload::UploadPolicy;

/// What a variable that is not set means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// The configuration is refused without it.
    Required,
    /// This value is used.
    Value(&'static str),
    /// Empty, which means what the text says.
    Empty(&'static str),
}

/// One configuration variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// Its name, e.g. `TESSERA_S3_BUCKET`.
    pub name: &'static str,
    /// What it means, in the README's words (Markdown).
    pub meaning: &'static str,
    /// What happens without it.
    pub unset: Unset,
}

const fn var(name: &'static str, meaning: &'static str, unset: Unset) -> Variable {
    Variable {
        name,
        meaning,
        unset,
    }
}

/// Storage endpoint.
pub const S3_ENDPOINT: &str = "TESSERA_S3_ENDPOINT";
/// Bucket.
pub const S3_BUCKET: &str = "TESSERA_S3_BUCKET";
/// Signing region.
pub const S3_REGION: &str = "TESSERA_S3_REGION";
/// Path or virtual-host addressing.
pub const S3_ADDRESSING: &str = "TESSERA_S3_ADDRESSING";
/// Access key id the edge presigns with.
pub const S3_ACCESS_KEY_ID: &str = "TESSERA_S3_ACCESS_KEY_ID";
/// Secret access key the edge presigns with.
pub const S3_SECRET_ACCESS_KEY: &str = "TESSERA_S3_SECRET_ACCESS_KEY";
/// Accepted API keys, as hashes.
pub const API_KEY_HASHES: &str = "TESSERA_API_KEY_HASHES";
/// CORS origins.
pub const CORS_ORIGINS: &str = "TESSERA_CORS_ORIGINS";
/// Request body limit.
pub const MAX_BODY_BYTES: &str = "TESSERA_MAX_BODY_BYTES";
/// Inputs per job.
pub const MAX_JOB_INPUTS: &str = "TESSERA_MAX_JOB_INPUTS";
/// Token bucket size.
pub const RATE_BURST: &str = "TESSERA_RATE_BURST";
/// Token bucket refill.
pub const RATE_PER_SECOND: &str = "TESSERA_RATE_PER_SECOND";
/// Lifetime of an upload's presigned PUT URLs.
pub const UPLOAD_URL_SECONDS: &str = "TESSERA_UPLOAD_URL_SECONDS";
/// The batch backend's URL.
pub const BACKEND_URL: &str = "TESSERA_BACKEND_URL";
/// The batch backend's service token.
pub const BACKEND_TOKEN: &str = "TESSERA_BACKEND_TOKEN";

/// Every variable the edge reads, in the README's order.
pub const VARIABLES: &[Variable] = &[
    var(
        S3_ENDPOINT,
        "storage endpoint, `http(s)://host[:port]`",
        Unset::Required,
    ),
    var(S3_BUCKET, "bucket", Unset::Required),
    var(
        S3_REGION,
        "signing region (`auto` for R2)",
        Unset::Value("us-east-1"),
    ),
    var(
        S3_ADDRESSING,
        "`path` or `virtual-host`",
        Unset::Value("path"),
    ),
    var(
        S3_ACCESS_KEY_ID,
        "access key id the edge presigns with",
        Unset::Required,
    ),
    var(
        S3_SECRET_ACCESS_KEY,
        "secret access key the edge presigns with (a secret on Workers)",
        Unset::Required,
    ),
    var(
        API_KEY_HASHES,
        "the accepted API keys, comma-separated: each the SHA-256 hex of a key (keys are never stored), reaching every project, or `HASH=a+b`, reaching projects `a` and `b` only",
        Unset::Empty("none: every request is 401"),
    ),
    var(
        CORS_ORIGINS,
        "comma-separated allowed origins, or `*`",
        Unset::Empty("none"),
    ),
    var(
        MAX_BODY_BYTES,
        "request body limit, bytes",
        Unset::Value("1048576"),
    ),
    var(
        MAX_JOB_INPUTS,
        "most inputs of one job (`POST /v1/jobs`), 1 to 10,000",
        Unset::Value("10000"),
    ),
    var(
        UPLOAD_URL_SECONDS,
        "lifetime of an upload's presigned PUT URLs, seconds, 1 to 604,800; an upload not completed by then is announced once by the `upload.expired` webhook",
        Unset::Value("900"),
    ),
    var(
        RATE_BURST,
        "per-key token bucket: largest burst",
        Unset::Value("60"),
    ),
    var(
        RATE_PER_SECOND,
        "per-key token bucket: sustained requests per second",
        Unset::Value("10"),
    ),
    var(
        BACKEND_URL,
        "the batch backend, for `POST /v1/jobs` and `GET /v1/jobs/{id}`",
        Unset::Required,
    ),
    var(
        BACKEND_TOKEN,
        "the batch backend's service token (a secret on Workers)",
        Unset::Required,
    ),
];

/// The README's table of [`VARIABLES`], one row each.
#[must_use]
pub fn markdown_table() -> String {
    let mut table = String::from("| variable | meaning | default |\n|---|---|---|\n");
    for v in VARIABLES {
        let default = match v.unset {
            Unset::Required => "required".to_owned(),
            Unset::Value(value) => format!("`{value}`"),
            Unset::Empty(means) => means.to_owned(),
        };
        table.push_str(&format!("| `{}` | {} | {default} |\n", v.name, v.meaning));
    }
    table
}

/// A variable that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable's value does not parse.
    #[error("{name} is {value:?}; expected {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

/// Reads variables through a lookup, applying [`VARIABLES`]' defaults.
struct Reader<F>(F);

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn text(&self, name: &'static str) -> Result<String, ConfigError> {
        let variable = VARIABLES
            .iter()
            .find(|v| v.name == name)
            .expect("every variable read is in VARIABLES");
        match ((self.0)(name), variable.unset) {
            (Some(value), _) => Ok(value),
            (None, Unset::Required) => Err(ConfigError::Missing(name)),
            (None, Unset::Value(value)) => Ok(value.to_owned()),
            (None, Unset::Empty(_)) => Ok(String::new()),
        }
    }

    fn number(&self, name: &'static str) -> Result<f64, ConfigError> {
        let value = self.text(name)?;
        value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or(ConfigError::Invalid {
                name,
                value,
                expected: "a number, 0 or more",
            })
    }

    fn job_inputs(&self) -> Result<usize, ConfigError> {
        let value = self.text(MAX_JOB_INPUTS)?;
        value
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=tessera_core::job_inputs::MAX_JOB_INPUTS).contains(n))
            .ok_or(ConfigError::Invalid {
                name: MAX_JOB_INPUTS,
                value,
                expected: "a whole number from 1 to 10000",
            })
    }

    fn upload_url_lifetime(&self) -> Result<Duration, ConfigError> {
        let value = self.text(UPLOAD_URL_SECONDS)?;
        let max_s = tessera_core::presign::MAX_EXPIRES_IN.as_secs();
        value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max_s).contains(n))
            .map(Duration::from_secs)
            .ok_or(ConfigError::Invalid {
                name: UPLOAD_URL_SECONDS,
                value,
                expected: "a whole number of seconds from 1 to 604800",
            })
    }

    fn grants(&self) -> Result<Vec<ApiKeyGrant>, ConfigError> {
        self.list(API_KEY_HASHES)?
            .into_iter()
            .map(|entry| {
                entry.parse().map_err(|_| ConfigError::Invalid {
                    name: API_KEY_HASHES,
                    value: entry,
                    expected: "HASH (64 hex digits) or HASH=project+project, comma-separated",
                })
            })
            .collect()
    }

    fn list(&self, name: &'static str) -> Result<Vec<String>, ConfigError> {
        Ok(self
            .text(name)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// Everything the router is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where objects live and the credentials to presign for them.
    pub storage: StorageTarget,
    /// Upload limits and URL validity.
    pub policy: UploadPolicy,
    /// Validity of the GET URLs in `GET /v1/images/{id}`.
    pub get_expires_in: Duration,
    /// Each accepted API key: its SHA-256 hex ([`tessera_core::access::api_key_hash`]) and
    /// the projects it reaches, written `HASH` or `HASH=project+project`.
    pub api_keys: Vec<ApiKeyGrant>,
    /// Origins allowed by CORS, e.g. `http://127.0.0.1:8080`; `*` allows any.
    pub cors_origins: Vec<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most inputs of one job, 1 to [`tessera_core::job_inputs::MAX_JOB_INPUTS`].
    pub max_job_inputs: usize,
    /// Per-key burst size.
    pub rate_burst: f64,
    /// Per-key sustained requests per second.
    pub rate_per_second: f64,
}

impl Config {
    /// Reads every router variable of [`VARIABLES`] through `lookup`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the missing or malformed variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let storage = storage_from_lookup(&lookup)?;
        let read = Reader(lookup);
        Ok(Self {
            storage,
            policy: UploadPolicy {
                expires_in: read.upload_url_lifetime()?,
                ..UploadPolicy::default()
            },
            get_expires_in: DOWNLOAD_URL_LIFETIME,
            api_keys: read.grants()?,
            cors_origins: read.list(CORS_ORIGINS)?,
            // A byte count: truncation of a fractional or huge value is harmless.
            max_body_bytes: read.number(MAX_BODY_BYTES)? as usize,
            max_job_inputs: read.job_inputs()?,
            rate_burst: read.number(RATE_BURST)?,
            rate_per_second: read.number(RATE_PER_SECOND)?,
        })
    }

    /// The variables that [`Config::from_lookup`] reads back into this configuration (the
    /// upload policy beyond its URL lifetime and the GET lifetime are not variables), e.g.
    /// for `wrangler dev --var`.
    #[must_use]
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        let addressing = match self.storage.addressing {
            Addressing::Path => "path",
            Addressing::VirtualHost => "virtual-host",
        };
        vec![
            (S3_ENDPOINT, self.storage.endpoint.clone()),
            (S3_BUCKET, self.storage.bucket.clone()),
            (S3_REGION, self.storage.region.clone()),
            (S3_ADDRESSING, addressing.to_owned()),
            (S3_ACCESS_KEY_ID, self.storage.access_key_id.clone()),
            (S3_SECRET_ACCESS_KEY, self.storage.secret_access_key.clone()),
            (API_KEY_HASHES, {
                let grants: Vec<String> = self.api_keys.iter().map(ToString::to_string).collect();
                grants.join(",")
            }),
            (CORS_ORIGINS, self.cors_origins.join(",")),
            (MAX_BODY_BYTES, self.max_body_bytes.to_string()),
            (MAX_JOB_INPUTS, self.max_job_inputs.to_string()),
            (
                UPLOAD_URL_SECONDS,
                self.policy.expires_in.as_secs().to_string(),
            ),
            (RATE_BURST, self.rate_burst.to_string()),
            (RATE_PER_SECOND, self.rate_per_second.to_string()),
        ]
    }
}

/// The storage variables (`TESSERA_S3_*` of [`VARIABLES`]) read through `lookup`: the edge's
/// and the batch workers' one way to name the bucket.
///
/// # Errors
/// [`ConfigError`] naming the missing or malformed variable.
pub fn storage_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<StorageTarget, ConfigError> {
    let read = Reader(lookup);
    let addressing = match read.text(S3_ADDRESSING)?.as_str() {
        "path" => Addressing::Path,
        "virtual-host" => Addressing::VirtualHost,
        other => {
            return Err(ConfigError::Invalid {
                name: S3_ADDRESSING,
                value: other.to_owned(),
                expected: "path or virtual-host",
            });
        }
    };
    Ok(StorageTarget {
        endpoint: read.text(S3_ENDPOINT)?,
        bucket: read.text(S3_BUCKET)?,
        region: read.text(S3_REGION)?,
        addressing,
        access_key_id: read.text(S3_ACCESS_KEY_ID)?,
        secret_access_key: read.text(S3_SECRET_ACCESS_KEY)?,
    })
}

/// Where a deployed edge finds the batch backend's job API ([`crate::HttpJobs`]).
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Jobs are created with `POST {url}/v1/jobs` and read with `GET {url}/v1/jobs/{id}`.
    pub url: String,
    /// Sent as `Authorization: Bearer {token}`.
    pub token: String,
}

impl BackendConfig {
    /// Reads [`BACKEND_URL`] and [`BACKEND_TOKEN`] through `lookup`.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] naming the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let read = Reader(lookup);
        Ok(Self {
            url: read.text(BACKEND_URL)?,
            token: read.text(BACKEND_TOKEN)?,
        })
    }

    /// The variables [`BackendConfig::from_lookup`] reads.
    #[must_use]
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            (BACKEND_URL, self.url.clone()),
            (BACKEND_TOKEN, self.token.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup<V: AsRef<str>>(vars: &[(&str, V)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_ref().to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    const REQUIRED: &[(&str, &str)] = &[
        (S3_ENDPOINT, "http://127.0.0.1:9000"),
        (S3_BUCKET, "tessera"),
        (S3_ACCESS_KEY_ID, "id"),
        (S3_SECRET_ACCESS_KEY, "secret"),
    ];

    #[test]
    fn defaults_come_from_the_table_and_round_trip_through_vars() {
        let config = Config::from_lookup(lookup(REQUIRED)).unwrap();
        assert_eq!(config.storage.region, "us-east-1");
        assert_eq!(config.storage.addressing, Addressing::Path);
        assert_eq!(
            (
                config.max_body_bytes,
                config.rate_burst,
                config.rate_per_second
            ),
            (1_048_576, 60.0, 10.0)
        );
        assert!(config.api_keys.is_empty() && config.cors_origins.is_empty());
        let again = Config::from_lookup(lookup(&config.to_vars())).unwrap();
        assert_eq!(format!("{again:?}"), format!("{config:?}"));
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            Config::from_lookup(lookup(&REQUIRED[1..])).unwrap_err(),
            ConfigError::Missing(S3_ENDPOINT)
        );
        let mut bad = REQUIRED.to_vec();
        bad.push((RATE_BURST, "lots"));
        assert_eq!(
            Config::from_lookup(lookup(&bad)).unwrap_err().to_string(),
            "TESSERA_RATE_BURST is \"lots\"; expected a number, 0 or more"
        );
        bad.push((S3_ADDRESSING, "dns"));
        assert!(matches!(
            Config::from_lookup(lookup(&bad)).unwrap_err(),
            ConfigError::Invalid {
                name: S3_ADDRESSING,
                ..
            }
        ));
        assert_eq!(
            BackendConfig::from_lookup(lookup(&[(BACKEND_URL, "http://x")])).unwrap_err(),
            ConfigError::Missing(BACKEND_TOKEN)
        );
    }

    #[test]
    fn the_readme_table_is_the_variables_table() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md's table of variables differs from config::VARIABLES; paste:\n{}",
            markdown_table()
        );
    }
}
