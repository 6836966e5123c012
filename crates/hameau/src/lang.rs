//! The language of what `hameau setup` says: French when the locale is French, English
//! otherwise. The readers are French town halls and their operators, so every message the
//! user sees is written in both, side by side where it is used (`say!`), which keeps the
//! two versions from drifting apart.

/// The language of the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    /// The language the environment asks for: the first of `LC_ALL`, `LC_MESSAGES` and
    /// `LANG` that is set and not empty decides, as POSIX orders them for messages.
    pub fn from_env() -> Lang {
        let var = |name: &str| std::env::var(name).ok();
        Lang::from_locale(var("LC_ALL").as_deref(), var("LC_MESSAGES").as_deref(), var("LANG").as_deref())
    }

    /// French if the deciding locale (see [`Lang::from_env`]) starts with `fr`
    /// (`fr_FR.UTF-8`, `fr_BE`, `fr`), English otherwise (`C`, `POSIX`, `en_GB`, none).
    pub fn from_locale(lc_all: Option<&str>, lc_messages: Option<&str>, lang: Option<&str>) -> Lang {
        let deciding = [lc_all, lc_messages, lang].into_iter().flatten().find(|value| !value.is_empty());
        match deciding {
            Some(locale) if locale.starts_with("fr") => Lang::Fr,
            _ => Lang::En,
        }
    }
}

/// `say!(lang, "français {x} {}", "English {x} {}", args…)`: the message in the user's
/// language, as a `String`; both are `format!` strings over the same arguments.
macro_rules! say {
    ($lang:expr, $fr:literal, $en:literal $(, $arg:expr)* $(,)?) => {
        match $lang {
            $crate::lang::Lang::Fr => format!($fr $(, $arg)*),
            $crate::lang::Lang::En => format!($en $(, $arg)*),
        }
    };
}
pub(crate) use say;

#[cfg(test)]
mod tests {
    use super::Lang;

    #[test]
    fn the_first_set_variable_decides() {
        assert_eq!(Lang::from_locale(None, None, Some("fr_FR.UTF-8")), Lang::Fr);
        assert_eq!(Lang::from_locale(None, None, Some("C")), Lang::En);
        assert_eq!(Lang::from_locale(None, None, None), Lang::En);
        assert_eq!(Lang::from_locale(Some("C.UTF-8"), None, Some("fr_FR.UTF-8")), Lang::En);
        assert_eq!(Lang::from_locale(Some(""), Some("fr_BE"), Some("en_GB")), Lang::Fr);
        assert_eq!(Lang::from_locale(None, Some("en_US.UTF-8"), Some("fr_FR")), Lang::En);
        let x = 3;
        assert_eq!(say!(Lang::Fr, "trois : {x}", "three: {x}"), "trois : 3");
        assert_eq!(say!(Lang::En, "trois : {x}", "three: {x}"), "three: 3");
    }
}
