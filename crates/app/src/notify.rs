//! How Tactful reaches a person directly (today: the one-time code that proves a self-service request
//! is theirs). A [`Notifier`] delivers a message to an email address or phone number: a file notifier
//! for development, a signed webhook for production (the brand's mailer or SMS gateway sends it). An
//! SMTP notifier plugs in by implementing the trait.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use tactful_domain::secret::Secret;
use tactful_vault::Zeroizing;

use crate::outbound::Outbound;

/// A message for one person.
pub struct Notification {
    /// `email` or `phone`.
    pub channel: String,
    /// The address, as the person gave it.
    pub to: Zeroizing<String>,
    /// What it is about (the request id, for the brand's records; never personal).
    pub reference: String,
    pub subject: String,
    pub body: Zeroizing<String>,
}

pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Delivers notifications.
pub trait Notifier: Send + Sync {
    /// Where messages go, for logs (never an address).
    fn describe(&self) -> String;
    fn send<'a>(&'a self, notification: &'a Notification) -> Sending<'a>;
}

/// Writes each message to a file in a directory (mode 0600): for development and the demo, where
/// there is no mailer. The files hold the address and the code, so keep the directory private.
pub struct FileNotifier {
    pub dir: PathBuf,
}

impl Notifier for FileNotifier {
    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> Sending<'a> {
        Box::pin(async move {
            let text = format!(
                "To: {} ({})\nSubject: {}\nReference: {}\n\n{}\n",
                notification.to.as_str(),
                notification.channel,
                notification.subject,
                notification.reference,
                notification.body.as_str()
            );
            let path = self.dir.join(format!("{}-{}.txt", crate::now_millis(), notification.reference));
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || write_private(&dir, &path, text.as_bytes()))
                .await
                .map_err(|error| error.to_string())?
        })
    }
}

fn write_private(dir: &std::path::Path, path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file =
        options.open(path).map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// POSTs each message as JSON to the brand's mailer or SMS gateway, signed like destination requests
/// (`Tactful-Signature: t=…,v1=…`), so the gateway can check it came from Tactful.
pub struct WebhookNotifier {
    pub url: String,
    pub secret: Secret,
    pub outbound: Outbound,
}

impl Notifier for WebhookNotifier {
    fn describe(&self) -> String {
        format!("the webhook {}", self.url)
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> Sending<'a> {
        Box::pin(async move {
            let body = serde_json::json!({
                "channel": notification.channel,
                "to": notification.to.as_str(),
                "reference": notification.reference,
                "subject": notification.subject,
                "body": notification.body.as_str(),
            });
            let body = serde_json::to_vec(&body).map_err(|error| error.to_string())?;
            let timestamp = crate::now_millis() / 1000;
            let signature = tactful_vault::webhook_signature(self.secret.expose(), timestamp, &body);
            let reply = self
                .outbound
                .post_json(&self.url, &[("tactful-signature", format!("t={timestamp},v1={signature}"))], body)
                .await?;
            if (200..300).contains(&reply.status) {
                Ok(())
            } else {
                Err(format!("the notification webhook answered {}", reply.status))
            }
        })
    }
}
