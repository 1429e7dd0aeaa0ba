//! Making a request: checking what each kind needs and whom it is about, the deadline of the
//! person's law, a one-time code for a self-service request, and the deadline's one extension.

use super::*;

fn invalid(message: impl Into<String>) -> AppError {
    AppError::with_message(ErrorCode::InvalidRequest, message)
}

/// Checks and stores a request, sends the code of a self-service one, and starts it. Returns its id.
pub async fn create(app: &App, input: NewRequestInput) -> Result<String, AppError> {
    let now = app.now();
    let id = tactful_vault::new_subject_id().replacen("sub_", "req_", 1);
    let mut details = json!({});
    let mut sealed = None;
    match input.kind {
        RequestKind::Rectify => {
            let path = input.details.get("path").and_then(Value::as_str).unwrap_or_default();
            let declared = app.catalog.property_by_path(path).is_some_and(|property| {
                property.path.starts_with("traits.") && !property.path.contains("[]")
            });
            if !declared {
                return Err(invalid(format!(
                    "\"{path}\" is not a profile property the catalog declares (traits.…)"
                )));
            }
            let Some(value) = &input.value else {
                return Err(invalid("say the corrected value (\"value\")"));
            };
            let subject = input.subject.as_deref().ok_or_else(|| AppError::new(ErrorCode::UnknownSubject))?;
            let data = app
                .store
                .subject_summary(subject)
                .await?
                .ok_or_else(|| AppError::new(ErrorCode::UnknownSubject))?;
            // Sealed under the person's own key: erasing them makes the correction unreadable too.
            let root = data
                .keys
                .iter()
                .find(|(member, _)| *member == data.subject)
                .ok_or_else(|| AppError::internal("no key for the family root"))?;
            let key = app.vault.subject_key(&root.0, &root.1).map_err(AppError::internal)?;
            sealed = Some(key.seal("request", &[id.as_bytes()], value.to_string().as_bytes()));
            details = json!({"path": path});
        }
        RequestKind::Object => {
            let Some(purpose) = input.details.get("purpose").and_then(Value::as_str) else {
                return Err(invalid("say which purpose the person objects to (\"purpose\")"));
            };
            let Some(declared) = app.catalog.purpose(purpose) else {
                return Err(AppError::with_message(
                    ErrorCode::UnknownPurpose,
                    format!("the catalog declares no purpose {purpose:?}"),
                ));
            };
            if declared.is_essential() {
                return Err(invalid(format!(
                    "{purpose} is needed to provide the service itself; to stop it, the person can ask for erasure"
                )));
            }
            details = json!({"purpose": purpose});
        }
        RequestKind::Erase => {
            details =
                json!({"suppress": input.details.get("suppress").and_then(Value::as_bool).unwrap_or(false)});
        }
        RequestKind::Unsuppress => {
            if input.identifiers.is_empty() {
                return Err(invalid("name the identifiers to lift the suppression of (\"identifiers\")"));
            }
            let identifiers: BTreeMap<String, String> = input
                .identifiers
                .iter()
                .map(|(kind, value)| (kind.as_str().to_owned(), value.clone()))
                .collect();
            // Lifting concerns someone who may be erased: what destinations must be told is sealed
            // under the deployment's outbox key, not a person's.
            sealed = Some(app.vault.outbox_key().seal(
                "request",
                &[id.as_bytes()],
                &serde_json::to_vec(&identifiers).unwrap_or_default(),
            ));
            details = json!({"kinds": identifiers.keys().collect::<Vec<_>>()});
        }
        _ => {}
    }
    let needs_subject = !matches!(input.kind, RequestKind::Unsuppress) && input.verify.is_none();
    if needs_subject && input.subject.is_none() {
        return Err(AppError::new(ErrorCode::UnknownSubject));
    }
    let jurisdiction = match &input.subject {
        Some(subject) => app.store.subject_state(subject).await?.and_then(|found| found.jurisdiction),
        None => None,
    };
    let due_at = rules::due_at(now, jurisdiction.as_deref().and_then(|key| app.catalog.jurisdiction(key)));
    let mut record = RequestRecord {
        id: id.clone(),
        subject: input.subject.clone(),
        kind: input.kind,
        status: RequestStatus::Received,
        source: input.source.clone(),
        received_at: now,
        due_at,
        extension_reason: None,
        completed_at: None,
        details,
        sealed,
        steps: Vec::new(),
        verification: None,
        verification_attempts: 0,
        verification_expires: None,
        lease_until: None,
        updated_at: now,
    };
    let code = input.verify.as_ref().map(|_| {
        let (code, hash) = app.vault.new_verification_code(&id);
        record.status = RequestStatus::Verifying;
        record.verification = Some(hash);
        record.verification_expires = Some(now + VERIFICATION_TTL_MS);
        code
    });
    let audit = vec![audit(app, &record, "received")];
    match app.store.create_request(record, audit).await? {
        NewRequest::Created => {}
        NewRequest::Duplicate(existing) => {
            return Err(AppError::with_message(
                ErrorCode::DuplicateRequest,
                format!("this person already has an open {} request: {existing}", input.kind.as_str()),
            )
            .details(json!({"request": existing})));
        }
    }
    if let (Some(contact), Some(code)) = (&input.verify, code)
        && let Err(error) = send_code(app, &id, contact, &code).await
    {
        tracing::warn!(request = %id, %error, "cannot send a verification code");
        fail(app, &id, RequestStatus::Verifying, "the verification code could not be sent").await?;
        return Err(AppError {
            cause: Some(error.into()),
            ..AppError::with_message(
                ErrorCode::Unavailable,
                "the verification code could not be sent; try again later",
            )
        });
    }
    Ok(id)
}

async fn send_code(app: &App, id: &str, contact: &Contact, code: &str) -> Result<(), String> {
    let brand = &app.catalog.brand().name;
    let body = Zeroizing::new(format!(
        "Your code to confirm your request to {brand}: {} {}\n\nIt expires in {} minutes. If you did not ask for this, ignore this message: nothing happens without the code.",
        &code[..4],
        &code[4..],
        VERIFICATION_TTL_MS / 60_000
    ));
    let notification = Notification {
        channel: contact.kind.as_str().to_owned(),
        to: contact.value.clone(),
        reference: id.to_owned(),
        subject: format!("Your code for {brand}"),
        body,
    };
    app.notifier.send(&notification).await
}

/// Checks a self-service request's code, which the person gave a brand user whose role may verify
/// requests on their behalf. A right code starts the request; a wrong one counts, and the request
/// fails after [`VERIFICATION_ATTEMPTS`] wrong codes or once the code expired.
pub async fn verify(app: &App, caller: &Caller, id: &str, code: &str) -> Result<RequestStatus, AppError> {
    caller.require(Capability::VerifyRequests)?;
    let now = app.now();
    let view = app.store.request(id).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownRequest))?;
    let record = view.record;
    if record.status != RequestStatus::Verifying {
        return Err(AppError::with_message(
            ErrorCode::Conflict,
            format!("this request is {}, not waiting for a code", record.status.as_str()),
        ));
    }
    if record.verification_expires.is_none_or(|end| end <= now) {
        fail(app, id, RequestStatus::Verifying, "the verification code expired").await?;
        return Err(AppError::with_message(ErrorCode::WrongCode, "the code expired; make the request again"));
    }
    if record.verification != Some(app.vault.verification_code_hash(id, code)) {
        let attempts = record.verification_attempts + 1;
        if attempts >= VERIFICATION_ATTEMPTS {
            fail(app, id, RequestStatus::Verifying, "too many wrong verification codes").await?;
            return Err(AppError::with_message(
                ErrorCode::WrongCode,
                "too many wrong codes; the request was closed, make it again",
            ));
        }
        let update = RequestUpdate {
            expect: Some(RequestStatus::Verifying),
            verification_attempts: Some(attempts),
            note: Some(format!("wrong verification code ({attempts} of {VERIFICATION_ATTEMPTS})")),
            ..RequestUpdate::default()
        };
        app.store.update_request(id, update).await?;
        return Err(AppError::with_message(
            ErrorCode::WrongCode,
            format!("that is not the code; {} tries left", VERIFICATION_ATTEMPTS - attempts),
        ));
    }
    // Proven theirs: now it may take the person's one open request of its kind, if that is free.
    if let Some(subject) = &record.subject {
        let open = app.store.requests(Some(subject), 1000).await?;
        if let Some(other) = open
            .iter()
            .find(|other| other.id != record.id && other.kind == record.kind && other.status.holds_the_slot())
        {
            let note = format!("already being handled as {}", other.id);
            fail(app, id, RequestStatus::Verifying, &note).await?;
            return Err(AppError::with_message(
                ErrorCode::DuplicateRequest,
                format!("this person already has an open {} request: {}", record.kind.as_str(), other.id),
            )
            .details(json!({"request": other.id})));
        }
    }
    let mut verified = record.clone();
    verified.status = RequestStatus::Running;
    let update = RequestUpdate {
        expect: Some(RequestStatus::Verifying),
        status: Some(RequestStatus::Running),
        clear_verification: true,
        note: Some("verified: the person confirmed it is theirs".into()),
        audit: vec![audit(app, &verified, "verified")],
        ..RequestUpdate::default()
    };
    if !app.store.update_request(id, update).await? {
        return Err(AppError::with_message(
            ErrorCode::InvalidRequest,
            "the request changed meanwhile; look at it again",
        ));
    }
    app.wake_requests.notify_one();
    Ok(RequestStatus::Running)
}

/// Extends a request's deadline once, within what the person's law allows, saying why; for a role
/// that reads request records and may handle requests of this kind.
pub async fn extend(app: &App, caller: &Caller, id: &str, days: u32, reason: &str) -> Result<i64, AppError> {
    caller.require_privacy()?;
    let view = app.store.request(id).await?.ok_or_else(|| AppError::new(ErrorCode::UnknownRequest))?;
    let record = view.record;
    caller.require_request(record.kind)?;
    let jurisdiction = match &record.subject {
        Some(subject) => app.store.subject_state(subject).await?.and_then(|found| found.jurisdiction),
        None => None,
    };
    let due = rules::extend(
        record.due_at,
        record.status,
        record.extension_reason.is_some(),
        jurisdiction.as_deref().and_then(|key| app.catalog.jurisdiction(key)),
        days,
        reason,
    )
    .map_err(|refused| match refused {
        // The request's state, not what was asked, stands in the way.
        rules::ExtensionRefused::Finished | rules::ExtensionRefused::AlreadyExtended => {
            AppError::with_message(ErrorCode::Conflict, refused.to_string())
        }
        refused => invalid(refused.to_string()),
    })?;
    let note = format!("deadline extended by {days} days: {}", reason.trim());
    let update = RequestUpdate {
        expect: Some(record.status),
        extend_to: Some((due, reason.trim().to_owned())),
        note: Some(note.clone()),
        audit: vec![audit(app, &record, &note)],
        ..RequestUpdate::default()
    };
    if !app.store.update_request(id, update).await? {
        return Err(AppError::with_message(
            ErrorCode::Conflict,
            "the request changed meanwhile; look at it again",
        ));
    }
    Ok(due)
}

/// A request as the brand's API and the CLI state it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// `access`, `export`, `rectify`, `restrict`, `unrestrict`, `object`, `erase`, `suppress`,
    /// `unsuppress`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The person: `sub_…` or `kind:value`. Not for `unsuppress` (give `identifiers`).
    #[serde(default, deserialize_with = "crate::fields::present")]
    pub subject: Option<String>,
    /// Self-service: the person's email or phone (`email:ada@example.com`), where the code goes.
    /// The answer is the same whether or not Tactful knows them.
    #[serde(default, deserialize_with = "crate::fields::present")]
    pub verify_by: Option<String>,
    /// `erase`: keep a keyed hash of their identifiers so their later events are dropped.
    #[serde(default)]
    pub suppress: bool,
    /// `rectify`: the profile path and its corrected value.
    #[serde(default, deserialize_with = "crate::fields::present")]
    pub path: Option<String>,
    pub value: Option<Value>,
    /// `object`: the purpose objected to.
    #[serde(default, deserialize_with = "crate::fields::present")]
    pub purpose: Option<String>,
    /// `unsuppress`: the identifiers to lift (`["email:ada@example.com"]`).
    #[serde(default)]
    pub identifiers: Vec<String>,
}

/// Makes a request the brand states and wakes the worker: `caller` is the brand's key (source
/// `api`), whose role must list the request's type and read request records, or `None` for the
/// operator at the command line (source `cli`). Returns its id and how to answer: the request in
/// full, or for a self-service one only what cannot tell whether the person is known. A refusal
/// stores nothing.
pub async fn submit(
    app: &App,
    caller: Option<&Caller>,
    submission: Submission,
) -> Result<(String, Value), AppError> {
    let kind = RequestKind::parse(&submission.kind).ok_or_else(|| {
        let kinds: Vec<&str> = RequestKind::ALL.iter().map(|kind| kind.as_str()).collect();
        invalid(format!("type {:?} is not one of {}", submission.kind, kinds.join(", ")))
    })?;
    if let Some(caller) = caller {
        caller.require_request(kind)?;
        caller.require_privacy()?;
    }
    let source = if caller.is_some() { "api" } else { "cli" };
    if kind == RequestKind::Unsuppress && (submission.subject.is_some() || submission.verify_by.is_some()) {
        return Err(invalid("unsuppress names the identifiers to lift (\"identifiers\"), not a subject"));
    }
    if kind != RequestKind::Unsuppress && !submission.identifiers.is_empty() {
        return Err(invalid("\"identifiers\" is for unsuppress only"));
    }
    let mut verify = None;
    let subject = match (&submission.subject, &submission.verify_by, kind) {
        (_, _, RequestKind::Unsuppress) => None,
        (Some(reference), None, _) => Some(crate::subjects::find(app, reference).await?),
        (None, Some(contact), _) => {
            let (contact_kind, value) = crate::subjects::identifier(app, contact)?;
            if !matches!(contact_kind, IdentifierKind::Email | IdentifierKind::Phone) {
                return Err(AppError::with_message(
                    ErrorCode::InvalidIdentifier,
                    "a code can be sent to an email address or a phone number only",
                ));
            }
            // Known or not, the answer is the same: a request cannot tell who is a customer.
            let known =
                app.store.subject_by_identifier(app.vault.blind(contact_kind.as_str(), &value)).await?;
            let root = match known {
                Some(found) => app.store.subject_state(&found).await?.map(|found| found.subject),
                None => None,
            };
            verify = Some(Contact { kind: contact_kind, value: Zeroizing::new(value) });
            root
        }
        (Some(_), Some(_), _) => {
            return Err(invalid(
                "give either subject (the brand has verified the person) or verify_by (self-service), not both",
            ));
        }
        (None, None, _) => {
            return Err(invalid("say who the request is about: subject (sub_… or email:…) or verify_by"));
        }
    };
    let identifiers = submission
        .identifiers
        .iter()
        .map(|reference| crate::subjects::identifier(app, reference))
        .collect::<Result<Vec<_>, _>>()?;
    let details =
        json!({"path": submission.path, "purpose": submission.purpose, "suppress": submission.suppress});
    let self_service = verify.is_some();
    let input = NewRequestInput {
        kind,
        subject,
        source: if self_service { "self_service".into() } else { source.to_owned() },
        details,
        value: submission.value,
        identifiers,
        verify,
    };
    let id = create(app, input).await?;
    app.wake_requests.notify_one();
    let view = app.store.request(&id).await?.ok_or_else(|| AppError::internal("a request vanished"))?;
    let answer = if self_service {
        json!({
            "id": id,
            "type": view.record.kind.as_str(),
            "status": view.record.status.as_str(),
            "received_at": tactful_domain::segment::format_time(view.record.received_at),
        })
    } else {
        super::details(app, &view).await?
    };
    Ok((id, answer))
}
