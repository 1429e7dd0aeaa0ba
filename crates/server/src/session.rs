//! How browsers carry the tokens the application issues (`tactful_app::tokens`): the cookies of the
//! preference center, the console, a sign-in in progress and an erasure being followed, and the
//! flags that keep them from scripts and other sites.

use axum::http::{HeaderMap, HeaderValue, header};

/// The cookie holding a customer's preference-center session.
pub const ME_COOKIE: &str = "tactful_me";
/// The cookie holding a brand console session.
pub const CONSOLE_COOKIE: &str = "tactful_console";
/// The cookie naming a sign-in waiting for its one-time code.
pub const SIGN_IN_COOKIE: &str = "tactful_sign_in";
/// The cookie naming an erasure the person asked for, so they can follow it after their session
/// ended with their data.
pub const ERASURE_COOKIE: &str = "tactful_erasure";

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly (scripts never see it), SameSite=Lax (not sent with another
/// site's posts; Strict would drop it on the redirect after a link clicked in an email), Secure
/// unless the server is reached over plain HTTP on a non-local address, for `max_age_seconds`
/// (0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age_seconds: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        max_age_seconds.max(0)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; tactful_me=abc.def"));
        headers.append(header::COOKIE, HeaderValue::from_static("tactful_console=\"x.y\""));
        assert_eq!(cookie(&headers, ME_COOKIE), Some("abc.def"));
        assert_eq!(cookie(&headers, CONSOLE_COOKIE), Some("x.y"));
        assert_eq!(cookie(&headers, "missing"), None);
        let set = set_cookie(ME_COOKIE, "abc.def", 3600, true);
        let set = set.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Lax", "Secure", "Max-Age=3600", "Path=/"] {
            assert!(set.contains(part), "{set}");
        }
    }
}
