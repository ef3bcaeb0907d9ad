//! The checks `serve` and `config check` share, so that `config check`
//! passes exactly what `serve` accepts: values with a fixed set of
//! choices, listen addresses, the log filter, the relay's networks.

use super::{Config, ConfigError, env_name};

impl Config {
    /// Refuse a value `serve` could not use, naming the key, its
    /// variable and the values it takes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: format!("`{key}` ({})", env_name(key)),
            message,
        };
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                format!(
                    "{:?} is not a log format: use text or json",
                    self.log.format
                ),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a log filter ({e}): use error, warn, info, debug, trace or \
                     per module such as graphgate::graph=debug,info",
                    self.log.level
                ),
            ));
        }
        self.smtp_listen()?;
        self.imap_listen()?;
        self.admin_listen()?;
        self.relay_listen()?;
        for (i, network) in self.relay.networks.iter().enumerate() {
            let cidr = network.cidr.trim();
            let host_like = !cidr.is_empty()
                && cidr
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:/".contains(c));
            if !host_like {
                return Err(invalid(
                    "relay.networks",
                    format!(
                        "entry {} has cidr = {:?}: give an address range such as \
                         192.168.1.0/24 or 2001:db8::/64, one address, or a host name",
                        i + 1,
                        network.cidr
                    ),
                ));
            }
            if network.account.trim().is_empty() {
                return Err(invalid(
                    "relay.networks",
                    format!(
                        "entry {} ({}) has no account: set account = \"<local login>\" \
                         (graphgate accounts list)",
                        i + 1,
                        network.cidr
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_serve_cannot_use_are_refused_naming_the_key() {
        assert!(Config::default().validate().is_ok());
        let text = "[log]\nformat = \"pretty\"\n";
        let config = Config::from_parts(text, "test", &[]).unwrap();
        let e = config.validate().unwrap_err().to_string();
        assert!(
            e.contains("log.format") && e.contains("text or json"),
            "{e}"
        );
        let text = "[relay]\nlisten = \"127.0.0.1:2526\"\n[[relay.networks]]\n\
                    cidr = \"10.0.0.0/8\"\naccount = \"\"\n";
        let config = Config::from_parts(text, "test", &[]).unwrap();
        let e = config.validate().unwrap_err().to_string();
        assert!(
            e.contains("relay.networks") && e.contains("no account"),
            "{e}"
        );
        let text = "[relay]\n[[relay.networks]]\ncidr = \"10.0.0.0/8\"\naccount = \"a@b.c\"\n\
                    sender_policy = \"spoof\"\n";
        let e = Config::from_parts(text, "test", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sender_policy") || e.contains("spoof"), "{e}");
    }
}
