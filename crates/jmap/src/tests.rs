use serde_json::{Map, Value, json};

use crate::{
    CORE_CAPABILITY, Invocation, Limits, MethodError, Request, RequestError, Response, apply_patch, evaluate_pointer,
    resolve_references,
};

const MAIL: &str = "urn:ietf:params:jmap:mail";
const CAPABILITIES: [&str; 2] = [CORE_CAPABILITY, MAIL];

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(object) => object,
        other => panic!("not an object: {other}"),
    }
}

fn parse(value: Value) -> Result<Request, RequestError> {
    Request::parse(value.to_string().as_bytes(), &Limits::default(), &CAPABILITIES)
}

#[test]
fn a_request_is_read_with_its_calls_in_order() {
    let request = parse(json!({
        "using": [MAIL],
        "methodCalls": [
            ["Email/query", {"accountId": "A1"}, "c1"],
            ["Email/get", {"accountId": "A1", "#ids": {"resultOf": "c1", "name": "Email/query", "path": "/ids"}}, "c2"]
        ],
        "createdIds": {"k1": "M1"}
    }))
    .unwrap();
    assert_eq!(request.using, [CORE_CAPABILITY, MAIL], "the core is implied");
    assert_eq!(request.method_calls.len(), 2);
    assert_eq!((request.method_calls[1].name.as_str(), request.method_calls[1].call_id.as_str()), ("Email/get", "c2"));
    assert_eq!(request.created_ids.unwrap()["k1"], "M1");
}

#[test]
fn bad_requests_get_the_rfcs_request_level_errors() {
    let limits = Limits::default();
    let not_json = Request::parse(b"{\"using\": [", &limits, &CAPABILITIES).unwrap_err();
    assert_eq!(not_json.type_uri(), "urn:ietf:params:jmap:error:notJSON");
    for (body, why) in [
        (json!([1, 2]), "not an object"),
        (json!({"methodCalls": []}), "using missing"),
        (json!({"using": "x", "methodCalls": []}), "using not an array"),
        (json!({"using": [1], "methodCalls": []}), "using not strings"),
        (json!({"using": []}), "methodCalls missing"),
        (json!({"using": [], "methodCalls": [["Core/echo", {}]]}), "a call of two parts"),
        (json!({"using": [], "methodCalls": [["Core/echo", [], "c"]]}), "arguments not an object"),
        (json!({"using": [], "methodCalls": [[1, {}, "c"]]}), "a name not a string"),
        (json!({"using": [], "methodCalls": [], "createdIds": {"k": 1}}), "createdIds of numbers"),
    ] {
        let error = parse(body).unwrap_err();
        assert_eq!(error.type_uri(), "urn:ietf:params:jmap:error:notRequest", "{why}: {error}");
        assert_eq!(error.to_json()["status"], 400);
    }
    let unknown = parse(json!({"using": ["urn:example:nothing"], "methodCalls": []})).unwrap_err();
    assert_eq!(unknown, RequestError::UnknownCapability("urn:example:nothing".into()));
    assert_eq!(unknown.to_json()["type"], "urn:ietf:params:jmap:error:unknownCapability");
    // Past the limits: the problem names the session object's limit.
    let calls: Vec<Value> = (0..17).map(|i| json!(["Core/echo", {}, format!("c{i}")])).collect();
    let many = parse(json!({"using": [], "methodCalls": calls})).unwrap_err();
    assert_eq!(many.to_json()["limit"], "maxCallsInRequest");
    let small = Limits { request_bytes_max: 1024, ..Limits::default() };
    let big = json!({"using": [], "methodCalls": [["Core/echo", {"x": "y".repeat(2000)}, "c"]]}).to_string();
    let too_big = Request::parse(big.as_bytes(), &small, &CAPABILITIES).unwrap_err();
    assert_eq!(too_big.to_json()["limit"], "maxSizeRequest");
    // Nesting past serde_json's own bound is not JSON to us, and no stack overflow.
    let deep = format!(
        "{{\"using\": [], \"methodCalls\": [[\"Core/echo\", {{\"x\": {}1{}}}, \"c\"]]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep =
        Request::parse(deep.as_bytes(), &Limits { request_bytes_max: 1 << 20, ..Limits::default() }, &CAPABILITIES);
    assert_eq!(deep.unwrap_err().type_uri(), "urn:ietf:params:jmap:error:notJSON");
}

/// The responses of RFC 8620 §3.7's example, as `resolve_references` sees them.
fn responses() -> Vec<Invocation> {
    vec![
        Invocation {
            name: "Email/query".into(),
            arguments: object(json!({"accountId": "A1", "ids": ["id1", "id2"], "position": 0})),
            call_id: "t0".into(),
        },
        Invocation {
            name: "Email/get".into(),
            arguments: object(json!({"accountId": "A1", "list": [
                {"id": "id1", "threadId": "T1"}, {"id": "id2", "threadId": "T2"}
            ]})),
            call_id: "t1".into(),
        },
        Invocation {
            name: "Thread/get".into(),
            arguments: object(json!({"accountId": "A1", "list": [
                {"id": "T1", "emailIds": ["id1", "id3"]}, {"id": "T2", "emailIds": ["id2"]}
            ]})),
            call_id: "t2".into(),
        },
    ]
}

fn reference(result_of: &str, name: &str, path: &str) -> Value {
    json!({"resultOf": result_of, "name": name, "path": path})
}

#[test]
fn result_references_take_earlier_results_with_star_flattened() {
    let limits = Limits::default();
    let mut arguments = object(json!({"accountId": "A1", "#ids": reference("t0", "Email/query", "/ids")}));
    resolve_references(&mut arguments, &responses(), &limits).unwrap();
    assert_eq!(Value::Object(arguments), json!({"accountId": "A1", "ids": ["id1", "id2"]}));
    let mut arguments = object(json!({"#ids": reference("t1", "Email/get", "/list/*/threadId")}));
    resolve_references(&mut arguments, &responses(), &limits).unwrap();
    assert_eq!(arguments["ids"], json!(["T1", "T2"]));
    // Each thread's emailIds is an array: the result is flattened.
    let mut arguments = object(json!({"#ids": reference("t2", "Thread/get", "/list/*/emailIds")}));
    resolve_references(&mut arguments, &responses(), &limits).unwrap();
    assert_eq!(arguments["ids"], json!(["id1", "id3", "id2"]));
    // Indexes, escapes and the empty path.
    let root = object(json!({"a/b": {"~c": [10, 20]}}));
    assert_eq!(evaluate_pointer(&root, "/a~1b/~0c/1", &limits).unwrap(), json!(20));
    assert_eq!(evaluate_pointer(&root, "", &limits).unwrap(), Value::Object(root.clone()));
}

#[test]
fn bad_references_are_the_rfcs_errors() {
    let limits = Limits::default();
    let fails = |arguments: Value| -> MethodError {
        let mut arguments = object(arguments);
        resolve_references(&mut arguments, &responses(), &limits).unwrap_err()
    };
    let both = fails(json!({"ids": [], "#ids": reference("t0", "Email/query", "/ids")}));
    assert_eq!(both.kind, "invalidArguments");
    assert_eq!(fails(json!({"#ids": {"resultOf": "t0"}})).kind, "invalidArguments");
    // A reference must not leave a reference key behind (found by the fuzz target).
    assert_eq!(fails(json!({"##ids": reference("t0", "Email/query", "/ids")})).kind, "invalidArguments");
    assert_eq!(fails(json!({"#": reference("t0", "Email/query", "/ids")})).kind, "invalidArguments");
    for (reference, why) in [
        (reference("nope", "Email/query", "/ids"), "no such call"),
        (reference("t0", "Email/get", "/ids"), "another method"),
        (reference("t0", "Email/query", "/nothing"), "no such property"),
        (reference("t0", "Email/query", "ids"), "no leading slash"),
        (reference("t0", "Email/query", "/ids/2"), "past the end"),
        (reference("t0", "Email/query", "/ids/01"), "a leading zero"),
        (reference("t0", "Email/query", "/*"), "star on the arguments object"),
        (reference("t0", "Email/query", "/position/*"), "star on a number"),
        (reference("t1", "Email/get", "/list/*/nothing"), "a property missing in an item"),
    ] {
        let error = fails(json!({"#ids": reference}));
        assert_eq!(error.kind, "invalidResultReference", "{why}: {error}");
    }
    // Bounded: tokens and values.
    let few = Limits { reference_path_tokens_max: 2, reference_values_max: 2, ..Limits::default() };
    let root = object(json!({"a": {"b": {"c": 1}}, "list": [[1, 2], [3]]}));
    assert!(evaluate_pointer(&root, "/a/b/c", &few).is_err());
    assert!(evaluate_pointer(&root, "/list/*", &few).unwrap_err().contains("more than 2 values"));
}

#[test]
fn many_stars_are_evaluated_without_recursion() {
    // 200 nested arrays and a path of 200 stars: a loop, not 200 frames.
    let mut value = json!("leaf");
    for _ in 0..100 {
        value = json!([value]);
    }
    let root = object(json!({ "deep": value }));
    let limits = Limits { reference_path_tokens_max: 256, ..Limits::default() };
    let path = format!("/deep{}", "/*".repeat(100));
    assert_eq!(evaluate_pointer(&root, &path, &limits).unwrap(), json!(["leaf"]));
}

#[test]
fn patches_follow_the_rfcs_rules() {
    let limits = Limits::default();
    let mut email = object(json!({"keywords": {"$seen": true}, "mailboxIds": {"m1": true}, "subject": "x"}));
    let patch = object(json!({"keywords/$flagged": true, "keywords/$seen": null, "mailboxIds": {"m2": true}}));
    apply_patch(&mut email, &patch, &limits).unwrap();
    assert_eq!(
        Value::Object(email.clone()),
        json!({"keywords": {"$flagged": true}, "mailboxIds": {"m2": true}, "subject": "x"})
    );
    let before = email.clone();
    for (patch, why) in [
        (json!({"keywords": {}, "keywords/$seen": true}), "one a prefix of the other"),
        (json!({"nothing/x": true}), "a parent missing"),
        (json!({"subject/x": true}), "a parent not an object"),
        (json!({"list/0": 1}), "inside an array"),
        (json!({"keywords//x": true}), "an empty part"),
    ] {
        let mut email = email.clone();
        if why == "inside an array" {
            email.insert("list".into(), json!([1, 2]));
        }
        let error = apply_patch(&mut email, &object(patch), &limits).unwrap_err();
        assert_eq!(error.kind, "invalidPatch", "{why}: {error}");
    }
    assert_eq!(email, before, "a failed patch changes nothing");
    // A path may name a key holding a slash, escaped.
    let mut object_with_slash = object(json!({"a/b": 1}));
    apply_patch(&mut object_with_slash, &object(json!({"a~1b": 2})), &limits).unwrap();
    assert_eq!(object_with_slash["a/b"], 2);
    let many: Map<String, Value> = (0..300).map(|i| (format!("k{i}"), json!(i))).collect();
    assert_eq!(apply_patch(&mut email, &many, &limits).unwrap_err().kind, "invalidPatch");
}

#[test]
fn a_response_is_written_as_the_rfc_shows() {
    let response = Response {
        method_responses: vec![Invocation {
            name: "error".into(),
            arguments: object(MethodError::unknown_method("Foo/bar").to_json()),
            call_id: "c1".into(),
        }],
        created_ids: None,
        session_state: "75128aab4b1b".into(),
    };
    let written = response.to_json();
    assert_eq!(written["methodResponses"][0][0], "error");
    assert_eq!(written["methodResponses"][0][1]["type"], "unknownMethod");
    assert_eq!(written["methodResponses"][0][2], "c1");
    assert_eq!(written["sessionState"], "75128aab4b1b");
    assert!(written.get("createdIds").is_none());
}

#[test]
fn the_default_limits_are_in_their_ranges() {
    Limits::default().check().unwrap();
    let problem = Limits { calls_in_request_max: 0, ..Limits::default() }.check().unwrap_err();
    assert_eq!(problem.key, "jmap.calls_in_request_max");
}

#[tokio::test]
async fn a_session_and_a_request_run_for_a_user() {
    use crate::api::{User, account_id, run, session};
    let user = User {
        account: 7,
        address: "agent@mairie.test".into(),
        quota: Default::default(),
        display_name: String::new(),
        may_send_as: vec![],
    };
    let limits = Limits::default();
    let fixture = crate::mail::tests::Fixture::new().await;
    let session = session(&user, "https://mx.test:8443", &limits);
    assert_eq!(session["apiUrl"], "https://mx.test:8443/jmap/api");
    assert_eq!(session["primaryAccounts"][CORE_CAPABILITY], "a7");
    assert_eq!(session["accounts"]["a7"]["name"], "agent@mairie.test");
    assert_eq!(session["capabilities"][CORE_CAPABILITY]["maxCallsInRequest"], 16);
    assert_eq!(session["state"].as_str().unwrap().len(), 16);
    assert_eq!(account_id(7), "a7");
    let request = parse(json!({
        "using": [CORE_CAPABILITY],
        "methodCalls": [
            ["Core/echo", {"hello": [1, 2]}, "c1"],
            ["Core/echo", {"#again": {"resultOf": "c1", "name": "Core/echo", "path": "/hello/1"}}, "c2"],
            ["Thread/nothing", {}, "c3"],
            ["Core/echo", {"#bad": {"resultOf": "c3", "name": "Thread/nothing", "path": "/x"}}, "c4"]
        ]
    }))
    .unwrap();
    let response = run(request, &user, &fixture.services, 0, "s1").await.to_json();
    let responses = response["methodResponses"].as_array().unwrap();
    assert_eq!(responses[0], json!(["Core/echo", {"hello": [1, 2]}, "c1"]));
    assert_eq!(responses[1], json!(["Core/echo", {"again": 2}, "c2"]));
    assert_eq!((responses[2][0].as_str(), responses[2][1]["type"].as_str()), (Some("error"), Some("unknownMethod")));
    // An error response is answered under the name "error": a reference to the method's
    // name finds none.
    assert_eq!(responses[3][1]["type"], "invalidResultReference");
    assert_eq!(response["sessionState"], "s1");
}
