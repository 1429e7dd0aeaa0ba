//! Signing in to the preference center with a one-time code sent to a known address. The answer is
//! the same for any address, so the page never tells who is a customer.

use super::*;

/// How long a sign-in code works, and how many tries it allows.
pub const SIGN_IN_CODE_TTL_MS: i64 = 15 * 60_000;
pub const SIGN_IN_ATTEMPTS: u32 = 5;

/// Starts a sign-in with a one-time code sent to `address` (an email address or a phone number).
/// The answer is the same whether or not the address belongs to a customer: a record is made
/// either way (one for an unknown address never works), and only a known person gets a message.
/// Returns the record's id, for the browser to hold while the person types the code.
pub async fn start_sign_in(app: &App, address: &str) -> Result<String, AppError> {
    let address = address.trim();
    let reference =
        if address.contains('@') { format!("email:{address}") } else { format!("phone:{address}") };
    let (kind, value) = crate::subjects::identifier(app, &reference).map_err(|_| {
        AppError::with_message(
            ErrorCode::InvalidIdentifier,
            "type the email address or phone number you gave us",
        )
    })?;
    let known = app.store.subject_by_identifier(app.vault.blind(kind.as_str(), &value)).await?;
    let subject = match known {
        Some(found) => app.store.subject_state(&found).await?.map(|found| found.subject),
        None => None,
    };
    let now = app.now();
    let id = tactful_vault::new_subject_id().replacen("sub_", "si_", 1);
    let (code, hash) = app.vault.new_verification_code(&id);
    app.store
        .create_sign_in_code(tactful_store::SignInCode {
            id: id.clone(),
            subject: subject.clone(),
            hash,
            created_at: now,
            expires_at: now + SIGN_IN_CODE_TTL_MS,
        })
        .await?;
    if subject.is_some() {
        let brand = &app.catalog.brand().name;
        let body = tactful_vault::Zeroizing::new(format!(
            "Your code to open your privacy settings at {brand} is {} {}. It works once, for {} minutes.\n\nIf you did not ask for it, you can ignore this message: nobody can sign in without the code.",
            &code[..4],
            &code[4..],
            SIGN_IN_CODE_TTL_MS / 60_000
        ));
        let notification = crate::notify::Notification {
            channel: kind.as_str().to_owned(),
            to: tactful_vault::Zeroizing::new(value),
            reference: id.clone(),
            subject: format!("Your code for {brand}"),
            body,
        };
        if let Err(error) = app.notifier.send(&notification).await {
            return Err(AppError::internal(format!("cannot send a sign-in code: {error}")));
        }
    }
    Ok(id)
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
