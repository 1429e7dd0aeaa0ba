//! Rate limits on the doors a stranger can knock at: sign-in codes per address and per client,
//! refused API keys per client, and events per write key. Counts live in the store, so every
//! instance shares them; buckets are named by keyed hashes, never by an address or a client.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::json;
use tactful_store::Rate;

use crate::error::{AppError, ErrorCode};
use crate::{App, Config};

/// A limit as configured: `COUNT/WINDOW` (`5/15m`, `20/1h`, `100000/1s`), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSetting(pub Option<RateLimit>);

/// At most `count` per `window_ms`, counted as a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u64,
    pub window_ms: i64,
}

const UNITS: [(&str, i64); 4] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)];

impl FromStr for LimitSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<LimitSetting, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(LimitSetting(None));
        }
        let wrong =
            || format!("{text:?} is not a limit: write COUNT/WINDOW (5/15m, 20/1h, 100000/1s) or off");
        let (count, window) = text.split_once('/').ok_or_else(wrong)?;
        let count: u64 = count.trim().parse().map_err(|_| wrong())?;
        let window = window.trim();
        let (number, unit) =
            window.split_at(window.find(|c: char| !c.is_ascii_digit()).unwrap_or(window.len()));
        let number: i64 = if number.is_empty() { 1 } else { number.parse().map_err(|_| wrong())? };
        let unit = UNITS.iter().find(|(name, _)| *name == unit).ok_or_else(wrong)?.1;
        if count == 0 || number == 0 {
            return Err(format!("{text:?} allows nothing: write off to switch the limit off"));
        }
        Ok(LimitSetting(Some(RateLimit { count, window_ms: number.checked_mul(unit).ok_or_else(wrong)? })))
    }
}

impl fmt::Display for LimitSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(limit) = self.0 else { return f.write_str("off") };
        let (name, unit) =
            UNITS.iter().find(|(_, unit)| limit.window_ms % unit == 0).copied().unwrap_or(("s", 1_000));
        write!(f, "{}/{}{name}", limit.count, limit.window_ms / unit)
    }
}

impl<'de> Deserialize<'de> for LimitSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<LimitSetting, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Which limit refused: the `limit` field of the error and the label of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    SignInPerAddress,
    SignInPerClient,
    ApiKeyFailuresPerClient,
    IngestPerWriteKey,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::SignInPerAddress => "sign_in_per_address",
            Limit::SignInPerClient => "sign_in_per_client",
            Limit::ApiKeyFailuresPerClient => "api_key_failures_per_client",
            Limit::IngestPerWriteKey => "ingest_per_write_key",
        }
    }
}

/// The limits of one instance, and its leases of ingestion counts.
#[derive(Debug, Default)]
pub struct Limits {
    pub sign_in_per_address: Option<RateLimit>,
    pub sign_in_per_client: Option<RateLimit>,
    pub api_key_failures_per_client: Option<RateLimit>,
    pub ingest_per_write_key: Option<RateLimit>,
    /// Per write key: what this instance took from the store's count and has not used yet, so the
    /// store is written once per twentieth of the limit, not once per request.
    leases: Mutex<HashMap<String, Lease>>,
}

#[derive(Debug)]
struct Lease {
    window_start: i64,
    left: u64,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            sign_in_per_address: config.limit_sign_in_per_address.0,
            sign_in_per_client: config.limit_sign_in_per_client.0,
            api_key_failures_per_client: config.limit_api_key_failures_per_client.0,
            ingest_per_write_key: config.limit_ingest_per_write_key.0,
            leases: Mutex::default(),
        }
    }

    fn of(&self, limit: Limit) -> Option<RateLimit> {
        match limit {
            Limit::SignInPerAddress => self.sign_in_per_address,
            Limit::SignInPerClient => self.sign_in_per_client,
            Limit::ApiKeyFailuresPerClient => self.api_key_failures_per_client,
            Limit::IngestPerWriteKey => self.ingest_per_write_key,
        }
    }
}

/// A client address as limits count it: an IPv4 address whole, an IPv6 address by its /64 (what one
/// home or one server is given), so walking a prefix's addresses gains nothing.
pub fn client_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The store's bucket for `key` under `limit`: a keyed hash (the vault's blind index), never the value.
fn bucket(app: &App, limit: Limit, key: &str) -> String {
    let blind = app.vault.blind(&format!("rate_limit.{}", limit.as_str()), key);
    format!("{}:{}", limit.as_str(), tactful_domain::encoding::hex(&blind.0[..16]))
}

/// The refusal of `limit`: 429 `rate_limited`, naming the limit, with when to retry.
pub fn refused(limit: Limit, retry_after_ms: i64) -> AppError {
    let seconds = u32::try_from((retry_after_ms.max(1) + 999) / 1000).unwrap_or(u32::MAX);
    AppError { retry_after_seconds: Some(seconds), ..AppError::new(ErrorCode::RateLimited) }
        .details(json!({"limit": limit.as_str()}))
}

/// Takes `amount` from `key`'s count under `limit`, or refuses.
async fn take(app: &App, limit: Limit, key: &str, amount: u64) -> Result<(), AppError> {
    let Some(rate) = app.rate_limits.of(limit) else { return Ok(()) };
    match app.store.rate_take(&bucket(app, limit, key), amount, rate.count, rate.window_ms, app.now()).await?
    {
        Rate::Allowed => Ok(()),
        Rate::Refused { retry_after_ms } => Err(refused(limit, retry_after_ms)),
    }
}

/// Counts a sign-in code asked for `address` (normalized) by `client`, or refuses: customers and
/// strangers alike, so the limit tells nothing either.
pub async fn sign_in(app: &App, address: &str, client: Option<IpAddr>) -> Result<(), AppError> {
    if let Some(client) = client {
        take(app, Limit::SignInPerClient, &client_key(client), 1).await?;
    }
    take(app, Limit::SignInPerAddress, address, 1).await
}

/// Checks an API key (`check`) unless `client` is past its refused keys: then every key is refused,
/// the right one too, so guessing learns nothing. A refused key counts against the client.
pub async fn api_key<T>(
    app: &App,
    client: Option<IpAddr>,
    check: impl Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    let (Some(client), Some(rate)) = (client, app.rate_limits.api_key_failures_per_client) else {
        return check.await;
    };
    let limit = Limit::ApiKeyFailuresPerClient;
    let bucket = bucket(app, limit, &client_key(client));
    if let Rate::Refused { retry_after_ms } =
        app.store.rate_check(&bucket, rate.count, rate.window_ms, app.now()).await?
    {
        return Err(refused(limit, retry_after_ms));
    }
    let result = check.await;
    if let Err(error) = &result
        && matches!(
            error.code,
            ErrorCode::InvalidApiKey | ErrorCode::ExpiredApiKey | ErrorCode::RevokedApiKey
        )
    {
        // A take refused here changes nothing: the count is at the limit already.
        app.store.rate_take(&bucket, 1, rate.count, rate.window_ms, app.now()).await?;
    }
    result
}

/// Counts `events` sent with `write_key`'s source, or refuses. The count is leased from the store a
/// twentieth of the limit at a time, so a busy source writes the store rarely; a lease is used up
/// within its window or dropped.
pub async fn ingest(app: &App, source: &str, events: u64) -> Result<(), AppError> {
    let Some(rate) = app.rate_limits.ingest_per_write_key else { return Ok(()) };
    let now = app.now();
    let window_start = now - now.rem_euclid(rate.window_ms);
    let from_lease = |leases: &mut HashMap<String, Lease>| match leases.get_mut(source) {
        Some(lease) if lease.window_start == window_start && lease.left >= events => {
            lease.left -= events;
            true
        }
        _ => false,
    };
    if from_lease(&mut app.rate_limits.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())) {
        return Ok(());
    }
    let limit = Limit::IngestPerWriteKey;
    let bucket = bucket(app, limit, source);
    let chunk = (rate.count / 20).max(1).max(events);
    let mut taken = chunk;
    let mut rate_now = app.store.rate_take(&bucket, chunk, rate.count, rate.window_ms, now).await?;
    if !rate_now.allowed() && chunk > events {
        taken = events;
        rate_now = app.store.rate_take(&bucket, events, rate.count, rate.window_ms, now).await?;
    }
    if let Rate::Refused { retry_after_ms } = rate_now {
        return Err(refused(limit, retry_after_ms));
    }
    let mut leases = app.rate_limits.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let lease = leases.entry(source.to_owned()).or_insert(Lease { window_start, left: 0 });
    if lease.window_start != window_start {
        *lease = Lease { window_start, left: 0 };
    }
    lease.left += taken - events;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_and_print_alike() {
        for (text, limit) in [
            ("5/15m", Some((5, 900_000))),
            ("20/1h", Some((20, 3_600_000))),
            ("100000/1s", Some((100_000, 1_000))),
            ("19/m", Some((19, 60_000))),
            ("off", None),
        ] {
            let setting: LimitSetting = text.parse().unwrap();
            assert_eq!(setting.0.map(|limit| (limit.count, limit.window_ms)), limit, "{text}");
        }
        assert_eq!("19/m".parse::<LimitSetting>().unwrap().to_string(), "19/1m");
        assert_eq!("5/90m".parse::<LimitSetting>().unwrap().to_string(), "5/90m");
        for wrong in ["5", "5/15", "0/1m", "x/1m", "5/1w", ""] {
            assert!(wrong.parse::<LimitSetting>().is_err(), "{wrong}");
        }
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        assert_eq!(client_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    }
}
