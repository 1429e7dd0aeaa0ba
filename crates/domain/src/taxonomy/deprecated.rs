//! The fideslang keys deprecated since they were published, and what replaced each, so catalogs and
//! imported data maps are told to move on (fideslang 3.2.0's `version_deprecated` and `replaced_by`,
//! same source and licence as `fideslang_data.rs`).

/// `(key, replaced_by, deprecated since)`.
#[rustfmt::skip]
pub(super) const DEPRECATED: &[(&str, &str, &str)] = &[
    ("personalize.profiling", "personalize.content.profiling", "2.1.1"),
    ("user.account.settings", "user.settings", "3.2.0"),
    ("user.authorization.biometric", "user.authorization.biometrics", "3.2.0"),
    ("user.biometric", "user.biometrics", "3.2.0"),
    ("user.biometric.fingerprint", "user.biometrics.fingerprint", "3.2.0"),
    ("user.biometric.retinal", "user.biometrics.retinal", "3.2.0"),
    ("user.biometric.voice", "user.biometrics.voice", "3.2.0"),
    ("user.biometric.health", "user.biometrics", "3.2.0"),
    ("user.childrens", "user.children", "3.2.0"),
    ("user.contact.url", "user.contact.social_url", "3.2.0"),
    ("user.contact.organization", "user.contact", "3.2.0"),
    ("user.location.imprecise", "user.location.coarse", "3.2.0"),
    ("user.social", "user.social_activity", "3.2.0"),
    ("user.unique_id.pseudonymous", "user.unique_id", "3.2.0"),
    ("user.telemetry", "user.device.telemetry", "3.2.0"),
    ("user.user_sensor", "user.device.sensor", "3.2.0"),
    ("user.sensor", "user.device.sensor", "3.2.0"),
    ("user.health_and_medical", "user.health", "3.2.0"),
    ("user.health_and_medical.genetic", "user.health.genetic", "3.2.0"),
    ("user.health_and_medical.insurance_beneficiary_id", "user.health.insurance_beneficiary_id", "3.2.0"),
    ("user.health_and_medical.record_id", "user.health.record_id", "3.2.0"),
    ("user.job_title", "user.professional_information.job_title", "3.2.0"),
    ("user.workplace", "user.professional_information.workplace", "3.2.0"),
];
