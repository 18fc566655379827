//! Email to sellers through SMTP (lettre): token reminders and leak notices.
//! Without `--smtp-url` nothing is sent and the portal says so.

use std::fmt;
use std::str::FromStr;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};

/// `smtp://[user:password@]host[:port]` (plain; `?tls=required` for
/// STARTTLS) or `smtps://…` (TLS from the first byte). The password never
/// appears in `Debug` or in an error.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    /// The URL with its password replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(url) => url.to_string(),
            Err(_) => "(unparseable)".into(),
        }
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&self.0)
            .map(|builder| builder.timeout(Some(std::time::Duration::from_secs(20))).build())
            .map_err(|e| format!("`{}`: {e}", self.redacted()))
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpUrl({})", self.redacted())
    }
}

impl FromStr for SmtpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let url = url::Url::parse(s).map_err(|e| format!("not a URL ({e}); write smtp://host:port or smtps://host"))?;
        if !matches!(url.scheme(), "smtp" | "smtps") {
            return Err(format!("the scheme must be smtp:// or smtps://, not {}://", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL names no host".into());
        }
        if let Some((_, tls)) = url.query_pairs().find(|(k, _)| k == "tls") {
            if url.scheme() == "smtps" || !matches!(tls.as_ref(), "required" | "opportunistic") {
                return Err(format!("tls={tls}: only smtp:// takes ?tls=required or ?tls=opportunistic"));
            }
        }
        let parsed = Self(s.to_owned());
        // Only the builder: the pooled transport needs the runtime, and
        // flags are parsed before it starts.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(s).map_err(|e| format!("`{}`: {e}", parsed.redacted()))?;
        Ok(parsed)
    }
}

/// The From address, `keygate <keygate@shop.example>` or a bare address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom(pub Mailbox);

impl FromStr for MailFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(MailFrom).map_err(|e| format!("`{s}` is not an email address ({e})"))
    }
}

/// Settings from the flags.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub smtp_url: Option<SmtpUrl>,
    pub from: MailFrom,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self { smtp_url: None, from: "keygate <keygate@localhost>".parse().expect("a valid default") }
    }
}

/// One email, as keygate writes them: plain text.
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Clone)]
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(settings: &MailSettings) -> anyhow::Result<Self> {
        let transport = settings.smtp_url.as_ref().map(SmtpUrl::transport).transpose().map_err(anyhow::Error::msg)?;
        Ok(Self { transport, from: settings.from.0.clone() })
    }

    /// Whether mail goes out at all.
    pub fn is_on(&self) -> bool {
        self.transport.is_some()
    }

    /// Sends it; `Ok(false)`: mail is off, nothing was sent.
    pub async fn send(&self, mail: Mail) -> Result<bool, String> {
        let Some(transport) = &self.transport else { return Ok(false) };
        let to: Mailbox = mail.to.parse().map_err(|e| format!("`{}` is not an email address ({e})", mail.to))?;
        let message = Message::builder()
            .message_id(None)
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)
            .map_err(|e| e.to_string())?;
        transport.send(message).await.map(|_| true).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_are_checked_and_their_password_never_shown() {
        let url: SmtpUrl = "smtp://keygate:s3cr3t@127.0.0.1:2525".parse().unwrap();
        assert_eq!(format!("{url:?}"), "SmtpUrl(smtp://keygate:***@127.0.0.1:2525)");
        assert!("smtps://mail.example.com".parse::<SmtpUrl>().is_ok());
        assert!("smtp://mail.example.com:587?tls=required".parse::<SmtpUrl>().is_ok());
        for (bad, message) in [
            ("mail.example.com", "not a URL"),
            ("http://mail.example.com", "must be smtp:// or smtps://"),
            ("smtp://mail.example.com?tls=maybe", "tls=maybe"),
            ("smtps://mail.example.com?tls=required", "only smtp://"),
        ] {
            let error = bad.parse::<SmtpUrl>().unwrap_err();
            assert!(error.contains(message), "{bad}: {error}");
        }
        assert!("not an address".parse::<MailFrom>().unwrap_err().contains("is not an email address"));
        assert!("keygate <keygate@shop.example>".parse::<MailFrom>().is_ok());
    }
}
