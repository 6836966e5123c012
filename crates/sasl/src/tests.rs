use crate::{Credentials, Error, Exchange, Mechanism, Next, decode};

fn credentials(mechanism: Mechanism, authzid: Option<&str>, username: &str, password: &str) -> Credentials {
    Credentials { mechanism, authzid: authzid.map(str::to_owned), username: username.into(), password: password.into() }
}

fn b64(bytes: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes).into_bytes()
}

/// One PLAIN response line and what it gives.
fn check_plain(response: &[u8], expect: Result<Credentials, Error>) {
    let got = Exchange::new(Mechanism::Plain).respond_line(&b64(response));
    assert_eq!(got, expect.map(Next::Done), "PLAIN {response:?}");
}

#[test]
fn plain() {
    check_plain(b"\0agent@mairie.fr\0secret", Ok(credentials(Mechanism::Plain, None, "agent@mairie.fr", "secret")));
    check_plain(
        b"accueil@mairie.fr\0agent@mairie.fr\0s",
        Ok(credentials(Mechanism::Plain, Some("accueil@mairie.fr"), "agent@mairie.fr", "s")),
    );
    check_plain(
        "\0agent\0mot de passe é".as_bytes(),
        Ok(credentials(Mechanism::Plain, None, "agent", "mot de passe é")),
    );
    check_plain(b"\0\0secret", Err(Error::MalformedPlain));
    check_plain(b"\0agent", Err(Error::MalformedPlain));
    check_plain(b"\0agent\0", Err(Error::MalformedPlain));
    check_plain(b"\0a\0b\0c", Err(Error::MalformedPlain));
    check_plain(b"", Err(Error::MalformedPlain));
    check_plain(b"\0agent\0\xff\xfe", Err(Error::NotUtf8));
}

#[test]
fn login_prompts_then_credentials() {
    let exchange = Exchange::new(Mechanism::Login);
    assert_eq!(exchange.first_challenge(), "VXNlcm5hbWU6");
    let Next::Challenge { exchange, challenge } = exchange.respond_line(&b64(b"agent@mairie.fr")).unwrap() else {
        panic!("LOGIN asks for the password")
    };
    assert_eq!(challenge, "UGFzc3dvcmQ6");
    let next = exchange.respond_line(&b64(b"secret")).unwrap();
    assert_eq!(next, Next::Done(credentials(Mechanism::Login, None, "agent@mairie.fr", "secret")));
    // An initial response is the username.
    let next = Exchange::new(Mechanism::Login).respond(b"agent".to_vec()).unwrap();
    assert!(matches!(next, Next::Challenge { challenge: "UGFzc3dvcmQ6", .. }), "{next:?}");
    assert_eq!(Exchange::new(Mechanism::Plain).first_challenge(), "");
}

#[test]
fn lines() {
    assert_eq!(Exchange::new(Mechanism::Plain).respond_line(b"*").unwrap_err(), Error::Cancelled);
    assert_eq!(Exchange::new(Mechanism::Login).respond_line(b"not base64!").unwrap_err(), Error::Base64);
    assert_eq!(decode(b"=").unwrap(), Vec::<u8>::new());
    assert_eq!(decode(b"").unwrap(), Vec::<u8>::new());
    assert_eq!(Exchange::new(Mechanism::Login).respond_line(&b64(b"\xff")).unwrap_err(), Error::NotUtf8);
}

#[test]
fn mechanisms() {
    assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
    assert_eq!(Mechanism::parse("LOGIN"), Some(Mechanism::Login));
    assert_eq!(Mechanism::parse("CRAM-MD5"), None);
    assert_eq!(Mechanism::Login.name(), "LOGIN");
    let shown = format!("{:?}", credentials(Mechanism::Plain, None, "agent", "secret"));
    assert!(!shown.contains("secret"), "{shown}");
}
