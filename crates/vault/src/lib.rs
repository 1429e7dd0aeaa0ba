//! The vault: Tactful's key hierarchy and every cryptographic operation on personal data. No personal
//! value is written anywhere without passing through [`SubjectKey::seal`], and no identifier is looked
//! up except through [`Vault::blind`].
//!
//! Hierarchy: a **master key** (file, environment or KMS; never stored in the database) wraps
//! - one random **data key per subject** (XChaCha20-Poly1305), which seals that person's values;
//!   destroying the wrapped key makes all of them unreadable at once (crypto-shredding);
//! - a random **index root**, from which HKDF derives the keys of blind indexes and deduplication.
//!   Because the root is random and only *wrapped* by the master key, rotating the master key
//!   re-wraps it without changing any blind index.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use zeroize::Zeroize;

/// Re-exported so callers hold decrypted values in the same zeroizing wrapper.
pub use zeroize::Zeroizing;

/// Bytes of every symmetric key.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// First byte of every sealed value and wrapped key: the format version.
const FORMAT_V1: u8 = 1;
/// Bytes of a master key's identifier stored with each wrapped key.
const KEY_ID_BYTES: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("a master key must be 32 bytes, given as 64 hex digits or 44 base64 characters")]
    MalformedMasterKey,
    #[error(
        "this data was sealed under master key {found}, but the configured master key is {expected}; \
         start with the master key this database was created with"
    )]
    WrongMasterKey { found: String, expected: String },
    #[error("a wrapped key or sealed value is damaged, or was moved from where it belongs")]
    Unauthentic,
    #[error("unknown format version {0}")]
    UnknownFormat(u8),
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Associated data binding a ciphertext to where it belongs: a domain label and the parts that
/// locate it (subject id, field path, …), each length-prefixed so parts cannot be shifted.
fn associated_data(domain: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut ad =
        Vec::with_capacity(16 + domain.len() + parts.iter().map(|part| part.len() + 4).sum::<usize>());
    ad.extend_from_slice(b"tactful/v1/");
    ad.extend_from_slice(domain.as_bytes());
    for part in parts {
        ad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        ad.extend_from_slice(part);
    }
    ad
}

/// The root of the hierarchy. It never leaves the process; the database only ever sees what it wraps.
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_BYTES]>,
    id: [u8; KEY_ID_BYTES],
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        MasterKey::from_bytes(random_bytes())
    }

    pub fn from_bytes(mut bytes: [u8; KEY_BYTES]) -> MasterKey {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&bytes).expect("HMAC takes any key length");
        mac.update(b"tactful/v1/master-key-id");
        let digest = mac.finalize().into_bytes();
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        let key = MasterKey { bytes: Zeroizing::new(bytes), id };
        bytes.zeroize();
        key
    }

    /// Reads a key written as 64 hex digits or standard base64 (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<MasterKey, VaultError> {
        let text = Zeroizing::new(text.trim().to_owned());
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (index, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16)
                    .map_err(|_| VaultError::MalformedMasterKey)?;
            }
        } else {
            use base64::Engine as _;
            let decoded = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|_| VaultError::MalformedMasterKey)?,
            );
            if decoded.len() != KEY_BYTES {
                return Err(VaultError::MalformedMasterKey);
            }
            bytes.copy_from_slice(&decoded);
        }
        Ok(MasterKey::from_bytes(*bytes))
    }

    /// The key as 64 hex digits, for writing the key file. Handle the result as a secret.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(2 * KEY_BYTES));
        for byte in self.bytes.iter() {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }

    /// A short public identifier of this key (not secret), stored with everything it wraps.
    pub fn id(&self) -> String {
        self.id.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn wrapping_cipher(&self) -> XChaCha20Poly1305 {
        let mut derived = Zeroizing::new([0u8; KEY_BYTES]);
        Hkdf::<Sha256>::new(None, self.bytes.as_slice())
            .expand(b"tactful/v1/key-wrapping", derived.as_mut_slice())
            .expect("32 bytes is a valid HKDF output length");
        XChaCha20Poly1305::new(&(*derived).into())
    }

    /// Wraps a key for storage, bound to `label` (a subject id or a root name) so a wrapped key
    /// cannot be moved to another subject.
    fn wrap(&self, label: &str, key: &[u8; KEY_BYTES]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = random_bytes();
        let mut header = Vec::with_capacity(1 + KEY_ID_BYTES);
        header.push(FORMAT_V1);
        header.extend_from_slice(&self.id);
        let ad = associated_data("wrap", &[&header, label.as_bytes()]);
        let ciphertext = self
            .wrapping_cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: key, aad: &ad })
            .expect("encrypting 32 bytes cannot fail");
        let mut wrapped = header;
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&ciphertext);
        wrapped
    }

    fn unwrap(&self, label: &str, wrapped: &[u8]) -> Result<Zeroizing<[u8; KEY_BYTES]>, VaultError> {
        let header_len = 1 + KEY_ID_BYTES;
        if wrapped.len() != header_len + NONCE_BYTES + KEY_BYTES + TAG_BYTES {
            return Err(VaultError::Unauthentic);
        }
        if wrapped[0] != FORMAT_V1 {
            return Err(VaultError::UnknownFormat(wrapped[0]));
        }
        let (header, rest) = wrapped.split_at(header_len);
        if header[1..] != self.id {
            let found = header[1..].iter().map(|byte| format!("{byte:02x}")).collect();
            return Err(VaultError::WrongMasterKey { found, expected: self.id() });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| VaultError::Unauthentic)?;
        let ad = associated_data("wrap", &[header, label.as_bytes()]);
        let plain = Zeroizing::new(
            self.wrapping_cipher()
                .decrypt(&nonce, Payload { msg: ciphertext, aad: &ad })
                .map_err(|_| VaultError::Unauthentic)?,
        );
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        key.copy_from_slice(&plain);
        Ok(key)
    }

    /// A new random index root, wrapped for storage in the database's keyring.
    pub fn new_index_root(&self) -> Vec<u8> {
        let root = Zeroizing::new(random_bytes::<KEY_BYTES>());
        self.wrap(INDEX_ROOT_LABEL, &root)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, **redacted**)", self.id())
    }
}

const INDEX_ROOT_LABEL: &str = "keyring/index-root";

/// What an identifier or a messageId becomes before it is stored or looked up: a keyed hash that
/// reveals nothing without the index key and cannot be reversed even with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blind(pub [u8; 32]);

impl fmt::Debug for Blind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blind({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// The master key in use and, during a rotation, the ones it replaces: new keys are wrapped under
/// `current`; keys wrapped under a `previous` one still unwrap until they are re-wrapped.
#[derive(Debug)]
pub struct MasterKeys {
    pub current: MasterKey,
    pub previous: Vec<MasterKey>,
}

impl From<MasterKey> for MasterKeys {
    fn from(current: MasterKey) -> Self {
        MasterKeys { current, previous: Vec::new() }
    }
}

impl MasterKeys {
    /// The master key a wrapped key was wrapped under, if it is one of these.
    fn for_wrapped(&self, wrapped: &[u8]) -> Result<&MasterKey, VaultError> {
        let id = wrapped.get(1..=KEY_ID_BYTES).ok_or(VaultError::Unauthentic)?;
        std::iter::once(&self.current).chain(&self.previous).find(|key| key.id == id).ok_or_else(|| {
            VaultError::WrongMasterKey {
                found: id.iter().map(|byte| format!("{byte:02x}")).collect(),
                expected: self.current.id(),
            }
        })
    }
}

/// The vault used by a running server: the master keys and the keys derived from the index root.
pub struct Vault {
    master: MasterKeys,
    blind_index: Hmac<Sha256>,
    dedupe: Hmac<Sha256>,
    pseudonym: Hmac<Sha256>,
    verification: Hmac<Sha256>,
    /// Authenticates what the web pages hand to browsers (preference-center links, sessions, CSRF
    /// tokens), so every instance can tell them from forgeries (links and sessions are also
    /// recorded in the store, so they can be ended).
    web_token: Hmac<Sha256>,
    signing: ed25519_dalek::SigningKey,
    legal_hold: SubjectKey,
    outbox: SubjectKey,
    /// The root of the per-purpose keys of export tokens (see [`Vault::export_token`]).
    export_root: Zeroizing<[u8; KEY_BYTES]>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").field("master", &self.master).finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens the vault with the master key(s) and the database's wrapped index root.
    pub fn open(master: impl Into<MasterKeys>, wrapped_index_root: &[u8]) -> Result<Vault, VaultError> {
        let master = master.into();
        let root = master.for_wrapped(wrapped_index_root)?.unwrap(INDEX_ROOT_LABEL, wrapped_index_root)?;
        let derive = |label: &[u8]| {
            let mut key = Zeroizing::new([0u8; KEY_BYTES]);
            Hkdf::<Sha256>::new(None, root.as_slice())
                .expand(label, key.as_mut_slice())
                .expect("32 bytes is a valid HKDF output length");
            <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_slice()).expect("HMAC takes any key length")
        };
        let secret = |label: &[u8]| {
            let mut key = Zeroizing::new([0u8; KEY_BYTES]);
            Hkdf::<Sha256>::new(None, root.as_slice())
                .expand(label, key.as_mut_slice())
                .expect("32 bytes is a valid HKDF output length");
            key
        };
        let seed = secret(b"tactful/v1/signing");
        Ok(Vault {
            blind_index: derive(b"tactful/v1/blind-index"),
            dedupe: derive(b"tactful/v1/dedupe"),
            pseudonym: derive(b"tactful/v1/audit-pseudonym"),
            verification: derive(b"tactful/v1/verification-code"),
            web_token: derive(b"tactful/v1/web-token"),
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
            legal_hold: SubjectKey { key: secret(b"tactful/v1/legal-hold") },
            outbox: SubjectKey { key: secret(b"tactful/v1/outbox") },
            export_root: secret(b"tactful/v1/export"),
            master,
        })
    }

    pub fn master_key_id(&self) -> String {
        self.master.current.id()
    }

    /// The index root re-wrapped under the current master key, if it was wrapped under another.
    pub fn rewrap_index_root(&self, wrapped: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        self.rewrap(INDEX_ROOT_LABEL, wrapped)
    }

    /// A subject's data key re-wrapped under the current master key, if it was wrapped under another
    /// (during a rotation). The data key itself, and so every sealed value, is unchanged.
    pub fn rewrap_subject_key(
        &self,
        subject_id: &str,
        wrapped: &[u8],
    ) -> Result<Option<Vec<u8>>, VaultError> {
        self.rewrap(&subject_label(subject_id), wrapped)
    }

    fn rewrap(&self, label: &str, wrapped: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        let under = self.master.for_wrapped(wrapped)?;
        if under.id == self.master.current.id {
            return Ok(None);
        }
        let key = under.unwrap(label, wrapped)?;
        Ok(Some(self.master.current.wrap(label, &key)))
    }

    /// The blind index of a normalized identifier of a kind (`email`, `user_id`, …).
    pub fn blind(&self, kind: &str, normalized: &str) -> Blind {
        let mut mac = self.blind_index.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        Blind(mac.finalize().into_bytes().into())
    }

    /// The deduplication key of a messageId from a source: equal for retries of the same event,
    /// unlinkable to the messageId without the key.
    pub fn dedupe_key(&self, source: &str, message_id: &str) -> [u8; 16] {
        let mut mac = self.dedupe.clone();
        mac.update(source.as_bytes());
        mac.update(&[0]);
        mac.update(message_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }

    /// The pseudonym of a subject in the audit log: a keyed hash of its id, so the log names nobody
    /// while a subject's own entries can still be found for their access log.
    pub fn subject_pseudonym(&self, subject_id: &str) -> String {
        let mut mac = self.pseudonym.clone();
        mac.update(subject_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        digest[..16].iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The token that stands for a subject in a pseudonymized export for `purpose`: a keyed hash of
    /// its id under a key of that purpose alone, so exports for one purpose keep a person's rows
    /// together (and stay stable across exports) while exports for different purposes cannot be
    /// joined on it. Unlike [`Vault::subject_pseudonym`], it never appears in the audit log.
    pub fn export_token(&self, purpose: &str, subject_id: &str) -> String {
        self.keyed_token(b"tactful/v1/export/", purpose, subject_id)
    }

    /// The token a forwarding destination knows a person by (or, with `input` an event's key, the
    /// messageId it receives the event under): a keyed hash under a key of that destination alone,
    /// stable for it, different for every other one, so two destinations cannot join what they hold.
    pub fn destination_token(&self, destination: &str, input: &str) -> String {
        self.keyed_token(b"tactful/v1/destination/", destination, input)
    }

    fn keyed_token(&self, domain: &[u8], scope: &str, input: &str) -> String {
        let subject_id = input;
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        let mut label = Vec::with_capacity(domain.len() + scope.len());
        label.extend_from_slice(domain);
        label.extend_from_slice(scope.as_bytes());
        Hkdf::<Sha256>::new(None, self.export_root.as_slice())
            .expand(&label, key.as_mut_slice())
            .expect("32 bytes is a valid HKDF output length");
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_slice()).expect("HMAC takes any key length");
        mac.update(subject_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut token = String::with_capacity(34);
        token.push_str("t_");
        for byte in &digest[..16] {
            token.push_str(&format!("{byte:02x}"));
        }
        token
    }

    /// Signs `message` with the brand's Ed25519 key (derived from the index root, so it survives
    /// master-key rotation). `context` separates what is signed (receipts, checkpoints) so a
    /// signature on one can never pass for the other.
    pub fn sign(&self, context: &str, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.signing.sign(&signed_bytes(context, message)).to_bytes()
    }

    /// The brand's public signing key, to publish so anyone can verify receipts and checkpoints.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The key that seals what the law requires to keep through an erasure (legal hold). It is not
    /// any person's key, so destroying a person's key leaves held records readable, for the
    /// legal-obligation purpose only.
    pub fn legal_hold_key(&self) -> &SubjectKey {
        &self.legal_hold
    }

    /// The key that seals outbox messages carrying identifiers (what a destination is told about an
    /// erased person must outlive the person's own key, until it is delivered).
    pub fn outbox_key(&self) -> &SubjectKey {
        &self.outbox
    }

    /// The MAC of a token handed to a browser (a preference-center link, a session, a CSRF token).
    /// `context` separates the kinds, so a token of one kind never passes for another.
    pub fn web_token_mac(&self, context: &str, payload: &[u8]) -> [u8; 32] {
        let mut mac = self.web_token.clone();
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `payload` in `context`, compared in constant time.
    pub fn web_token_verify(&self, context: &str, payload: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.web_token.clone();
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac.verify_slice(tag).is_ok()
    }

    /// A new verification code for a self-service request (8 digits, to type from a message) and its
    /// keyed hash, bound to the request: only the hash is stored.
    pub fn new_verification_code(&self, request_id: &str) -> (Zeroizing<String>, [u8; 32]) {
        // Rejection sampling: every 8-digit code is equally likely.
        let number = loop {
            let draw = u32::from_le_bytes(random_bytes::<4>());
            if draw < 4_200_000_000 {
                break draw % 100_000_000;
            }
        };
        let code = Zeroizing::new(format!("{number:08}"));
        let hash = self.verification_code_hash(request_id, &code);
        (code, hash)
    }

    /// The keyed hash of a verification code typed for a request (spaces and dashes ignored).
    pub fn verification_code_hash(&self, request_id: &str, code: &str) -> [u8; 32] {
        let typed: String = code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        let mut mac = self.verification.clone();
        mac.update(request_id.as_bytes());
        mac.update(&[0]);
        mac.update(typed.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A new subject: a random id (never derived from personal data) and its data key, with the key
    /// wrapped for storage.
    pub fn new_subject(&self) -> NewSubject {
        let id = new_subject_id();
        let key = Zeroizing::new(random_bytes::<KEY_BYTES>());
        let wrapped = self.master.current.wrap(&subject_label(&id), &key);
        NewSubject { key: SubjectKey { key }, wrapped, id }
    }

    /// Unwraps a subject's data key from storage.
    pub fn subject_key(&self, subject_id: &str, wrapped: &[u8]) -> Result<SubjectKey, VaultError> {
        Ok(SubjectKey { key: self.master.for_wrapped(wrapped)?.unwrap(&subject_label(subject_id), wrapped)? })
    }
}

fn signed_bytes(context: &str, message: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(context.len() + 1 + message.len());
    bytes.extend_from_slice(context.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(message);
    bytes
}

/// An Ed25519 public key, as the brand publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// A short identifier: the first 8 bytes of its SHA-256, in hex.
    pub fn id(&self) -> String {
        use sha2::Digest as _;
        let digest = Sha256::digest(self.0);
        digest[..8].iter().map(|byte| format!("{byte:02x}")).collect()
    }

    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Option<PublicKey> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
        Some(PublicKey(bytes.try_into().ok()?))
    }

    /// Whether `signature` is this key's signature of `message` in `context` (strict verification:
    /// no malleable or small-order forgeries).
    pub fn verify(&self, context: &str, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else { return false };
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(&signed_bytes(context, message), &signature).is_ok()
    }
}

fn subject_label(subject_id: &str) -> String {
    format!("subject/{subject_id}")
}

/// The signature of a webhook request, as destinations check it (the convention of Stripe and GitHub):
/// hex HMAC-SHA256 under the destination's secret over `"{timestamp}.{body}"`.
pub fn webhook_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A new API key: its public id (`key_…`, for logs and the audit log), the key itself (`tk_…`,
/// shown once, never stored), and the hash that is stored.
pub fn new_api_key() -> (String, Zeroizing<String>, [u8; 32]) {
    let id = base32(&random_bytes::<8>());
    let secret = Zeroizing::new(base32(&random_bytes::<32>()));
    let key = Zeroizing::new(format!("tk_{id}_{}", secret.as_str()));
    let hash = api_key_hash(&key);
    (format!("key_{id}"), key, hash)
}

/// The stored form of an API key. Keys are 256 random bits, so a plain SHA-256 is as strong as a
/// slow password hash here, and lets a request be checked with one indexed lookup.
pub fn api_key_hash(key: &str) -> [u8; 32] {
    use sha2::Digest as _;
    Sha256::digest(key.trim().as_bytes()).into()
}

/// The public id of an API key as written (`tk_<id>_…` → `key_<id>`), if it looks like one.
pub fn api_key_id(key: &str) -> Option<String> {
    let rest = key.trim().strip_prefix("tk_")?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then(|| format!("key_{id}"))
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut text = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            text.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        text.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    text
}

/// A random subject id: `sub_` and 26 base32 characters (128 random bits).
pub fn new_subject_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bytes: [u8; 16] = random_bytes();
    let mut bits: u128 = u128::from_be_bytes(bytes);
    let mut id = String::with_capacity(30);
    id.push_str("sub_");
    for _ in 0..26 {
        id.push(char::from(ALPHABET[(bits & 31) as usize]));
        bits >>= 5;
    }
    id
}

/// A freshly created subject.
pub struct NewSubject {
    pub id: String,
    pub key: SubjectKey,
    /// The data key wrapped by the master key, to store with the subject.
    pub wrapped: Vec<u8>,
}

/// One person's data key. Zeroized when dropped.
pub struct SubjectKey {
    key: Zeroizing<[u8; KEY_BYTES]>,
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(**redacted**)")
    }
}

impl SubjectKey {
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.key).into())
    }

    /// Seals a personal value. `domain` and `parts` say where it belongs (for example `"event"` and
    /// `[subject id, event id]`, or `"profile"` and `[subject id, path]`); opening it anywhere else fails.
    pub fn seal(&self, domain: &str, parts: &[&[u8]], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = random_bytes();
        let ad = associated_data(domain, parts);
        let ciphertext = self
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &ad })
            .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut sealed = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
        sealed.push(FORMAT_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens a value sealed with [`SubjectKey::seal`] under the same `domain` and `parts`.
    pub fn open(
        &self,
        domain: &str,
        parts: &[&[u8]],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let Some((&version, rest)) = sealed.split_first() else { return Err(VaultError::Unauthentic) };
        if version != FORMAT_V1 {
            return Err(VaultError::UnknownFormat(version));
        }
        if rest.len() < NONCE_BYTES + TAG_BYTES {
            return Err(VaultError::Unauthentic);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| VaultError::Unauthentic)?;
        let ad = associated_data(domain, parts);
        self.cipher()
            .decrypt(&nonce, Payload { msg: ciphertext, aad: &ad })
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Unauthentic)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod export_token_tests {
    //! Export tokens: stable within a purpose, unlinkable across purposes and to audit pseudonyms.

    use super::*;

    fn vault() -> Vault {
        let master = MasterKey::generate();
        let root = master.new_index_root();
        Vault::open(master, &root).unwrap()
    }

    #[test]
    fn tokens_are_stable_per_purpose_and_differ_between_purposes() {
        let vault = vault();
        let reporting = vault.export_token("analytics.reporting", "sub_a");
        assert_eq!(reporting, vault.export_token("analytics.reporting", "sub_a"));
        assert!(reporting.starts_with("t_") && reporting.len() == 34, "{reporting}");
        assert_ne!(reporting, vault.export_token("personalize.content", "sub_a"));
        assert_ne!(reporting, vault.export_token("analytics.reporting", "sub_b"));
        // A broader purpose has a key of its own: its exports do not join a narrower one's either.
        assert_ne!(reporting, vault.export_token("analytics", "sub_a"));
        let pseudonym = vault.subject_pseudonym("sub_a");
        assert_ne!(reporting.trim_start_matches("t_"), pseudonym);
    }

    #[test]
    fn tokens_depend_on_the_index_root_and_survive_master_key_rotation() {
        let old = MasterKey::from_bytes([5u8; 32]);
        let root = old.new_index_root();
        let before = Vault::open(old, &root).unwrap();
        assert_ne!(before.export_token("p", "sub_a"), vault().export_token("p", "sub_a"), "another brand");
        let during = Vault::open(
            MasterKeys {
                current: MasterKey::from_bytes([6u8; 32]),
                previous: vec![MasterKey::from_bytes([5u8; 32])],
            },
            &root,
        )
        .unwrap();
        let rewrapped = during.rewrap_index_root(&root).unwrap().unwrap();
        let after = Vault::open(MasterKey::from_bytes([6u8; 32]), &rewrapped).unwrap();
        assert_eq!(before.export_token("p", "sub_a"), after.export_token("p", "sub_a"));
    }
}
