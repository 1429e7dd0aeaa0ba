//! The models an evaluation compares: the rows of the published table, and the served model beside
//! its baseline for a brand's console.

use crate::{Config, Mechanism};

/// The δ of the Gaussian rows (the catalog's default).
pub const DELTA: f64 = 1e-7;

/// How a row ranks the catalogue for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranker {
    /// The released popular list, best first, minus the person's own items: the classic baseline.
    MostPopular,
    /// What the service answers someone without a usable history (trending, then popular), minus
    /// the person's own items.
    Fallback,
    /// What the service answers the person from their history.
    Personal,
}

/// One evaluated model: what it is and exactly how it is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub model: &'static str,
    /// The setting in words, as printed.
    pub setting: String,
    pub config: Config,
    pub ranker: Ranker,
}

impl Setting {
    /// Whether a privacy protection is on (a k-threshold above one, or noise).
    pub fn private(&self) -> bool {
        self.config.min_support > 1 || self.config.epsilon.is_some()
    }

    /// Whether the noise (if any) is Gaussian over the catalogue's pairs.
    pub fn gaussian(&self) -> bool {
        self.config.epsilon.is_some() && matches!(self.config.mechanism, Mechanism::Gaussian { .. })
    }
}

/// The rows of the evaluation, in order.
pub fn settings() -> Vec<Setting> {
    let defaults = Config::default();
    let k = defaults.min_support;
    let open = Config { min_support: 1, ..defaults.clone() };
    // With noise, the cap is the lever: one person moves C(cap, 2) pair counts, so the noise on
    // each grows with the square of the cap.
    let noisy = |epsilon: f64, cap: usize| Setting {
        model: "item-to-item",
        setting: format!("k={k}, DP ε={epsilon}, cap {cap}"),
        config: Config { epsilon: Some(epsilon), cap, ..defaults.clone() },
        ranker: Ranker::Personal,
    };
    // Over the catalogue's pairs the noise grows with the cap only (the L2 sensitivity is
    // √C(cap, 2)) while the signal grows with its square, so a larger cap pays.
    let gaussian = |epsilon: f64, cap: usize| Setting {
        model: "item-to-item",
        setting: format!("k={k}, Gaussian ε={epsilon} δ={DELTA:e}, cap {cap}"),
        config: Config {
            epsilon: Some(epsilon),
            mechanism: Mechanism::Gaussian { delta: DELTA },
            cap,
            ..defaults.clone()
        },
        ranker: Ranker::Personal,
    };
    vec![
        Setting {
            model: "most popular",
            setting: format!("popular list only ({}-day window, k=1)", defaults.popular_days),
            config: open.clone(),
            ranker: Ranker::MostPopular,
        },
        Setting {
            model: "popularity",
            setting: "no history: trending, then popular (k=1)".into(),
            config: open.clone(),
            ranker: Ranker::Fallback,
        },
        Setting {
            model: "item-to-item",
            setting: format!("k=1, no noise, cap {}", defaults.cap),
            config: open,
            ranker: Ranker::Personal,
        },
        Setting {
            model: "item-to-item",
            setting: format!("k={k}, no noise, cap {}", defaults.cap),
            config: defaults.clone(),
            ranker: Ranker::Personal,
        },
        noisy(4.0, defaults.cap),
        noisy(1.0, defaults.cap),
        noisy(4.0, 5),
        noisy(1.0, 5),
        gaussian(4.0, defaults.cap),
        gaussian(1.0, defaults.cap),
    ]
}

/// The settings a service runs with, beside the popularity baseline: what the brand's console
/// measures on its own people (most popular; the served model with its own k, cap and noise).
pub fn served_settings(config: &Config) -> Vec<Setting> {
    let open = Config { min_support: 1, epsilon: None, ..config.clone() };
    let noise = config.epsilon.map_or_else(|| "no noise".to_owned(), |e| format!("DP ε={e}"));
    vec![
        Setting {
            model: "most popular",
            setting: format!("popular list only ({}-day window)", config.popular_days),
            config: open,
            ranker: Ranker::MostPopular,
        },
        Setting {
            model: "item-to-item",
            setting: format!("as served: k={}, {noise}, cap {}", config.min_support, config.cap),
            config: config.clone(),
            ranker: Ranker::Personal,
        },
    ]
}
