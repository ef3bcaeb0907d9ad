//! `graphgate consent-url`: the admin consent URL for the configured app.

use std::process::ExitCode;

use clap::Args;

use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct ConsentArgs {
    /// Where Entra ID sends the admin back afterwards (must be a redirect URI
    /// of the app registration).
    #[arg(long, default_value = "http://localhost", value_name = "URI")]
    redirect_uri: String,
}

pub use crate::gateway::ops::consent::{PERMISSIONS, consent_url};

pub fn run(config: &Config, args: &ConsentArgs) -> anyhow::Result<ExitCode> {
    let url = consent_url(config, &args.redirect_uri)?;
    println!(
        "Admin consent is needed when your tenant does not let users consent to apps \
         themselves, and always for application (app-only) permissions.\n\
         A Global Administrator or Privileged Role Administrator opens this URL, signs in \
         and accepts the permissions for the whole organisation:\n\n{url}\n\nWhat they grant:"
    );
    for (name, words) in PERMISSIONS {
        println!("  {name}: {words}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_admin_consent_url() {
        let mut config = Config::default();
        assert!(consent_url(&config, "http://localhost").is_err());
        config.microsoft.client_id = "abc".into();
        assert!(consent_url(&config, "http://localhost").is_ok());
        config.microsoft.tenant = "common".into();
        let err = consent_url(&config, "http://localhost")
            .unwrap_err()
            .to_string();
        assert!(err.contains("GRAPHGATE_MICROSOFT_TENANT"), "{err}");
        config.microsoft.tenant = "contoso.com".into();
        let url = consent_url(&config, "http://localhost").unwrap();
        assert!(
            url.starts_with(
                "https://login.microsoftonline.com/contoso.com/adminconsent?client_id=abc&state="
            ),
            "{url}"
        );
        assert!(
            url.ends_with("&redirect_uri=http%3A%2F%2Flocalhost"),
            "{url}"
        );
    }
}
