//! Signing in to the preference center with a one-time code sent to a known address. The answer,
//! and the work done before it, are the same for any address, so the page never tells who is a
//! customer; the code is sent after the answer, by the worker.

use std::net::IpAddr;

use serde::Deserialize;

use super::*;

/// How long a sign-in code works, and how many tries it allows.
pub const SIGN_IN_CODE_TTL_MS: i64 = 15 * 60_000;
pub const SIGN_IN_ATTEMPTS: u32 = 5;

/// The length every sealed sign-in message is padded to (in plaintext bytes), so a customer's and
/// a stranger's are the same size in the outbox.
const MESSAGE_BYTES: usize = 2048;
/// How long the sender waits before trying a message again when the notifier failed.
const RESEND_AFTER_MS: i64 = 5_000;

/// A sign-in code's message as it waits in the outbox, sealed under the outbox key. A stranger's is
/// written just like a customer's, to the same address, with `deliver` 0: the sender discards it.
#[derive(Serialize, Deserialize)]
struct CodeMessage {
    deliver: u8,
    channel: String,
    to: String,
    reference: String,
    subject: String,
    body: String,
    expires_at: i64,
}

/// Starts a sign-in with a one-time code for `address` (an email address or a phone number), asked
/// for by `client`. Known address or not, the same work is done on the way: the limits are counted,
/// the address is looked up, a code record and a sealed message of one fixed length are written in
/// one transaction. Nothing is sent here: the worker sends a customer's code within about a second
/// and discards a stranger's message. Returns the record's id, for the browser to hold.
/// An address a code can go to, as the API document's pattern for the sign-in form says: an email
/// address in plain ASCII (`name@example.com`) or a phone number of 5 to 15 digits, with an optional
/// leading `+` and spaces, dots, dashes or brackets between them.
pub fn well_formed(address: &str) -> bool {
    let label = |text: &str, allowed: &dyn Fn(char) -> bool, longest: usize| {
        !text.is_empty() && text.len() <= longest && text.chars().all(allowed)
    };
    if let Some((local, domain)) = address.split_once('@') {
        let labels: Vec<&str> = domain.split('.').collect();
        return label(local, &|c| c.is_ascii_alphanumeric() || "._%+-".contains(c), 64)
            && (2..=5).contains(&labels.len())
            && labels.iter().all(|part| label(part, &|c| c.is_ascii_alphanumeric() || c == '-', 63));
    }
    let number = address.strip_prefix('+').unwrap_or(address);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    number.chars().all(|c| c.is_ascii_digit() || " ().-".contains(c)) && (5..=15).contains(&digits)
}

pub async fn start_sign_in(app: &App, address: &str, client: Option<IpAddr>) -> Result<String, AppError> {
    let address = address.trim_ascii();
    if !well_formed(address) {
        return Err(AppError::with_message(
            ErrorCode::InvalidIdentifier,
            "type the email address or phone number you gave us",
        ));
    }
    let reference =
        if address.contains('@') { format!("email:{address}") } else { format!("phone:{address}") };
    let (kind, value) = crate::subjects::identifier(app, &reference).map_err(|_| {
        AppError::with_message(
            ErrorCode::InvalidIdentifier,
            "type the email address or phone number you gave us",
        )
    })?;
    crate::limits::sign_in(app, &value, client).await?;
    let known = app.store.subject_by_identifier(app.vault.blind(kind.as_str(), &value)).await?;
    // The same one-query lookup for a stranger (of an id nobody has), so both take the same path;
    // an erased or merged-away subject is no one.
    let found = known.unwrap_or_else(|| "sub_nobody".to_owned());
    let subject = app.store.subject_states(vec![found]).await?.pop().map(|found| found.subject);
    let now = app.now();
    let id = tactful_vault::new_subject_id().replacen("sub_", "si_", 1);
    let (code, hash) = app.vault.new_verification_code(&id);
    let brand = &app.catalog.brand().name;
    let message = CodeMessage {
        deliver: u8::from(subject.is_some()),
        channel: kind.as_str().to_owned(),
        to: value,
        reference: id.clone(),
        subject: format!("Your code for {brand}"),
        body: format!(
            "Your code to open your privacy settings at {brand} is {} {}. It works once, for {} minutes.\n\nIf you did not ask for it, you can ignore this message: nobody can sign in without the code.",
            &code[..4],
            &code[4..],
            SIGN_IN_CODE_TTL_MS / 60_000
        ),
        expires_at: now + SIGN_IN_CODE_TTL_MS,
    };
    let mut plain = tactful_vault::Zeroizing::new(serde_json::to_vec(&message).unwrap_or_default());
    // Trailing spaces are JSON whitespace: the padded text still parses.
    let padded = plain.len().div_ceil(MESSAGE_BYTES).max(1) * MESSAGE_BYTES;
    plain.resize(padded, b' ');
    let sealed = app.vault.outbox_key().seal(MESSAGE_DOMAIN, &[], &plain);
    app.store
        .create_sign_in_code(tactful_store::SignInCode {
            id: id.clone(),
            subject,
            hash,
            created_at: now,
            expires_at: now + SIGN_IN_CODE_TTL_MS,
            message: sealed,
        })
        .await?;
    Ok(id)
}

const MESSAGE_DOMAIN: &str = "sign_in_code";

/// Sends the sign-in codes waiting in the outbox (customers' only; strangers' messages are
/// discarded unsent, as are codes that expired meanwhile). The worker calls this every second.
/// Returns how many messages were taken from the outbox.
pub async fn send_sign_in_codes(app: &App, now: i64) -> Result<usize, AppError> {
    let lease = i64::try_from(app.outbound.timeout().as_millis()).unwrap_or(i64::MAX).saturating_add(1_000);
    let messages = app.store.outbox_claim(tactful_store::SIGN_IN_TOPIC, 16, now, lease).await?;
    let count = messages.len();
    let sent = futures_util::future::join_all(messages.into_iter().map(|message| async move {
        let opened = app.vault.outbox_key().open(MESSAGE_DOMAIN, &[], &message.payload).ok();
        let parsed = opened.and_then(|plain| serde_json::from_slice::<CodeMessage>(&plain).ok());
        let Some(code) = parsed.filter(|code| code.deliver == 1 && code.expires_at > now) else {
            return app.store.outbox_complete(&message.id).await;
        };
        let notification = crate::notify::Notification {
            channel: code.channel,
            to: tactful_vault::Zeroizing::new(code.to),
            reference: code.reference,
            subject: code.subject,
            body: tactful_vault::Zeroizing::new(code.body),
        };
        match app.notifier.send(&notification).await {
            Ok(()) => app.store.outbox_complete(&message.id).await,
            Err(error) => {
                tracing::warn!(reference = %notification.reference, %error, "cannot send a sign-in code; will retry");
                app.store.outbox_retry(&message.id, now + RESEND_AFTER_MS, &error).await
            }
        }
    }))
    .await;
    for result in sent {
        result?;
    }
    Ok(count)
}

/// What a typed sign-in code came to.
pub enum SignedIn {
    /// Signed in as this family root.
    As(String),
    /// Not the code; tries left.
    Wrong(u32),
    /// The code no longer works (expired, used, too many tries): ask for a new one.
    Over,
}

/// Checks a typed code for sign-in `id`; a right one is used up and recorded in the access log.
pub async fn finish_sign_in(app: &App, id: &str, code: &str) -> Result<SignedIn, AppError> {
    let now = app.now();
    let hash = app.vault.verification_code_hash(id, code);
    Ok(match app.store.try_sign_in_code(id, hash, now, SIGN_IN_ATTEMPTS).await? {
        tactful_store::CodeOutcome::Accepted(subject) => match app.store.subject_state(&subject).await? {
            Some(found) => {
                app.store
                    .audit_append(vec![audit(app, &found.subject, "signed_in_with_code", None)], now)
                    .await?;
                SignedIn::As(found.subject)
            }
            None => SignedIn::Over,
        },
        tactful_store::CodeOutcome::Wrong { tries_left } => SignedIn::Wrong(tries_left),
        tactful_store::CodeOutcome::Refused => SignedIn::Over,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_is_a_plain_email_address_or_a_phone_number() {
        for good in
            ["ada@example.com", "a.b+c@mail.example.co.uk", "+44 7700 900123", "(030) 123-45", "12345"]
        {
            assert!(super::well_formed(good), "{good}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@exa mple.com",
            "1234",
            "+1234567890123456",
            "12+345",
            "ädä@example.com",
        ] {
            assert!(!super::well_formed(bad), "{bad}");
        }
    }
}
