//! Document and statement parsing, and the typed errors.

use super::*;

#[test]
fn statement_object_or_array() {
    let object = doc(r#"{"Version": "2012-10-17", "Statement":
            {"Sid": "One", "Effect": "Allow", "Action": "lex:ListBots", "Resource": "*"}}"#);
    let array = doc(r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "One", "Effect": "Allow", "Action": ["lex:ListBots"], "Resource": ["*"]}]}"#);
    assert_eq!(object.statements().len(), 1);
    assert_eq!(array.statements().len(), 1);
    assert_eq!(object.statements()[0].sid(), Some("One"));
    assert_eq!(object.version(), Some(PolicyVersion::V2012_10_17));
    for document in [object, array] {
        let policies = [NamedPolicy::new("p", document)];
        assert_eq!(decision(&policies, "lex:ListBots", "*"), Decision::Allowed);
    }
    let empty = doc(r#"{"Version": "2012-10-17", "Statement": []}"#);
    assert!(empty.statements().is_empty());
    assert_eq!(
        decision(&[NamedPolicy::new("p", empty)], "lex:ListBots", "*"),
        Decision::ImplicitDeny
    );
    let no_version =
        doc(r#"{"Id": "x", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#);
    assert_eq!(no_version.version(), None);
    assert_eq!(no_version.id(), Some("x"));
    assert_eq!(no_version.statements()[0].sid(), None);
    let evaluation = evaluate(&[NamedPolicy::new("p", no_version)], "s3:x", "y");
    assert_eq!(evaluation.decision, Decision::ExplicitDeny);
    assert_eq!(evaluation.statement, None);
}

#[test]
fn url_encoded_documents() {
    // As IAM returns them (spaces and punctuation percent-encoded).
    let encoded = "%7B%22Version%22%3A%20%222012-10-17%22%2C%20%22Statement%22%3A%20%5B%7B%22Sid%22%3A%20%22Lex%22%2C%20%22Effect%22%3A%20%22Allow%22%2C%20%22Action%22%3A%20%22lex%3APostContent%22%2C%20%22Resource%22%3A%20%22arn%3Aaws%3Alex%3Aus-east-1%3A123456789012%3Abot%3AOrder%3A%2A%22%7D%5D%7D";
    let policy = NamedPolicy::parse_url_encoded("inline:lex", encoded).expect("decodes");
    let evaluation = evaluate(
        &[policy],
        "lex:PostContent",
        "arn:aws:lex:us-east-1:123456789012:bot:Order:prod",
    );
    assert_eq!(evaluation.decision, Decision::Allowed);
    assert_eq!(evaluation.statement.as_deref(), Some("Lex"));
    // Already-decoded JSON passes through untouched (a `%` stays a `%`).
    let plain = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/100%25"}}"#;
    let parsed = PolicyDocument::parse_url_encoded(plain).expect("plain json");
    let policies = [NamedPolicy::new("p", parsed)];
    assert_eq!(
        decision(&policies, "s3:GetObject", "arn:aws:s3:::b/100%25"),
        Decision::Allowed
    );
    // Form encoding (`+` for spaces) is accepted as a fallback.
    let form = "%7B%22Statement%22%3A+%7B%22Effect%22%3A+%22Allow%22%2C+%22Action%22%3A+%22s3%3A%2A%22%2C+%22Resource%22%3A+%22%2A%22%7D%7D";
    assert!(PolicyDocument::parse_url_encoded(form).is_ok());
    // Invalid UTF-8 after decoding.
    assert_eq!(
        PolicyDocument::parse_url_encoded("%7B%FF%7D"),
        Err(PolicyError::Encoding)
    );
    // Encoded garbage is a JSON error, not a panic.
    assert!(matches!(
        PolicyDocument::parse_url_encoded("%7Bnot%20json"),
        Err(PolicyError::Json(_))
    ));
}

#[test]
fn malformed_documents_are_typed_errors() {
    for text in ["", "{", "not json", "{\"Statement\": [}", "\u{0}"] {
        assert!(
            matches!(PolicyDocument::parse(text), Err(PolicyError::Json(_))),
            "{text:?}"
        );
    }
    let cases = [
        ("[]", "$"),
        ("\"x\"", "$"),
        ("{}", "Statement"),
        (r#"{"Version": "2012-10-17"}"#, "Statement"),
        (r#"{"Version": "2013-01-01", "Statement": []}"#, "Version"),
        (r#"{"Version": 2012, "Statement": []}"#, "Version"),
        (r#"{"Statement": "x"}"#, "Statement"),
        (r#"{"Statement": [1]}"#, "Statement[0]"),
        (r#"{"Statement": [], "Extra": 1}"#, "Extra"),
        (
            r#"{"Statement": {"Action": "s3:*", "Resource": "*"}}"#,
            "Statement.Effect",
        ),
        (
            r#"{"Statement": {"Effect": "allow", "Action": "s3:*", "Resource": "*"}}"#,
            "Statement.Effect",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Resource": "*"}}"#,
            "Statement",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"}}"#,
            "Statement",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:*"}}"#,
            "Statement",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "NotResource": "*"}}"#,
            "Statement",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": [], "Resource": "*"}}"#,
            "Statement.Action",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": 3, "Resource": "*"}}"#,
            "Statement.Action",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": ["s3:*", null], "Resource": "*"}}"#,
            "Statement.Action[1]",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "GetObject", "Resource": "*"}}"#,
            "Statement.Action[0]",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": [""]}}"#,
            "Statement.Resource[0]",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": []}}"#,
            "Statement.Condition",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": true}}}"#,
            "Statement.Condition.Bool",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Sid": 5}]}"#,
            "Statement[1].Sid",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condtion": {}}}"#,
            "Statement.Condtion",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": "someone"}}"#,
            "Statement.Principal",
        ),
    ];
    for (text, path) in cases {
        assert_eq!(malformed_path(text), path, "{text}");
    }
    let too_big = format!(
        "{{\"Statement\": [], \"Id\": \"{}\"}}",
        "x".repeat(MAX_DOCUMENT_BYTES)
    );
    assert!(matches!(
        PolicyDocument::parse(&too_big),
        Err(PolicyError::TooLarge { .. })
    ));
    // Error messages name the place.
    let message = PolicyDocument::parse(
        r#"{"Statement": {"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}}"#,
    )
    .expect_err("bad effect")
    .to_string();
    assert!(message.contains("Statement.Effect"), "{message}");
}

#[test]
fn trust_policies_parse_and_never_grant() {
    let trust = doc(
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "connect.amazonaws.com"}, "Action": "sts:AssumeRole"}]}"#,
    );
    let statement = &trust.statements()[0];
    assert_eq!(statement.resources(), None);
    let Some(PrincipalSpec::Principal(Principal::Specific(map))) = statement.principals() else {
        panic!("principal expected");
    };
    assert_eq!(
        map.get("Service"),
        Some(&vec!["connect.amazonaws.com".to_owned()])
    );
    assert_eq!(
        statement.applies_to("sts:AssumeRole", "*"),
        StatementMatch::No
    );
    assert_eq!(
        decision(&[NamedPolicy::new("trust", trust)], "sts:AssumeRole", "*"),
        Decision::ImplicitDeny
    );
    let any = doc(r#"{"Statement": {"Effect": "Deny", "NotPrincipal": "*", "Action": "*"}}"#);
    assert!(matches!(
        any.statements()[0].principals(),
        Some(PrincipalSpec::NotPrincipal(Principal::Any))
    ));
}

#[test]
fn statement_applies_to() {
    let document = doc(MANAGED);
    let metrics = &document.statements()[5];
    assert_eq!(
        metrics.applies_to("cloudwatch:putmetricdata", "*"),
        StatementMatch::Conditional
    );
    assert!(
        metrics
            .condition()
            .is_some_and(|c| c.contains_key("StringEquals"))
    );
    let connect = &document.statements()[0];
    assert_eq!(connect.effect(), Effect::Allow);
    assert_eq!(
        connect.applies_to("connect:X", "anything"),
        StatementMatch::Yes
    );
    assert_eq!(connect.applies_to("s3:X", "*"), StatementMatch::No);
    let ActionSpec::Action(patterns) = connect.actions() else {
        panic!("Action expected");
    };
    assert_eq!(patterns[0].as_str(), "connect:*");
    assert!(!patterns[0].has_variable());
}
