//! A `/query` filter (RFC 8620 §5.5): a tree of `FilterOperator`s (`AND`, `OR`, `NOT`)
//! over `FilterCondition`s, as the client nests it. Flattened here in prefix order without
//! recursion and bounded in nodes (`jmap.filter_nodes_max`), then evaluated without
//! recursion too: a client controls the depth, never the server's stack.

use serde_json::{Map, Value};

use crate::MethodError;

/// One node of a flattened filter, operators before their operands.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// All of the next `n` operands.
    And(usize),
    /// One of the next `n` operands.
    Or(usize),
    /// None of the next `n` operands (JMAP's `NOT` is "none of").
    Not(usize),
    /// A `FilterCondition`: the type's own properties.
    Condition(Map<String, Value>),
}

/// The filter `value` (absent: every object) flattened, at most `nodes_max` nodes
/// (`unsupportedFilter` past it, as for a filter the server cannot run).
pub fn flatten(value: Option<Value>, nodes_max: u64) -> Result<Vec<Node>, MethodError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(vec![Node::And(0)]);
    };
    let mut nodes = Vec::new();
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        if nodes.len() as u64 >= nodes_max {
            return Err(MethodError::new(
                "unsupportedFilter",
                format!("the filter has more than {nodes_max} operators and conditions"),
            ));
        }
        let Value::Object(mut object) = value else {
            return Err(MethodError::invalid_arguments("a filter is an object"));
        };
        match object.remove("operator") {
            None => nodes.push(Node::Condition(object)),
            Some(Value::String(operator)) => {
                let conditions = match object.remove("conditions") {
                    Some(Value::Array(conditions)) if object.is_empty() => conditions,
                    _ => {
                        return Err(MethodError::invalid_arguments(
                            "a FilterOperator has exactly \"operator\" and \"conditions\" (an array)",
                        ));
                    }
                };
                nodes.push(match operator.as_str() {
                    "AND" => Node::And(conditions.len()),
                    "OR" => Node::Or(conditions.len()),
                    "NOT" => Node::Not(conditions.len()),
                    _ => return Err(MethodError::invalid_arguments(format!("no filter operator {operator:?}"))),
                });
                // Reversed onto the stack, so that they come off in their order.
                pending.extend(conditions.into_iter().rev());
            }
            Some(_) => return Err(MethodError::invalid_arguments("a filter's \"operator\" is a string")),
        }
    }
    Ok(nodes)
}

/// Whether an object matches the flattened filter `nodes`, `condition` deciding each
/// condition (its error is the call's). Evaluated from the end: operands are on the
/// stack when their operator comes.
pub fn matches<E>(
    nodes: &[Node],
    mut condition: impl FnMut(&Map<String, Value>) -> Result<bool, E>,
) -> Result<bool, E> {
    let mut stack: Vec<bool> = Vec::with_capacity(nodes.len());
    for node in nodes.iter().rev() {
        let value = match node {
            Node::Condition(properties) => condition(properties)?,
            Node::And(n) | Node::Or(n) | Node::Not(n) => {
                let operands = stack.split_off(stack.len().saturating_sub(*n));
                match node {
                    Node::And(_) => operands.iter().all(|value| *value),
                    Node::Or(_) => operands.iter().any(|value| *value),
                    _ => !operands.iter().any(|value| *value),
                }
            }
        };
        stack.push(value);
    }
    Ok(stack.pop().unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::{Node, flatten, matches};
    use serde_json::json;

    #[test]
    fn a_filter_flattens_and_evaluates_without_recursion() {
        let filter = json!({"operator": "AND", "conditions": [
            {"name": "a"},
            {"operator": "NOT", "conditions": [{"name": "b"}, {"name": "c"}]},
        ]});
        let nodes = flatten(Some(filter), 100).unwrap();
        assert_eq!(nodes.len(), 5);
        assert_eq!(nodes[0], Node::And(2));
        assert_eq!(nodes[2], Node::Not(2));
        let with = |names: &[&str]| {
            matches::<()>(&nodes, |condition| Ok(names.contains(&condition["name"].as_str().unwrap()))).unwrap()
        };
        assert!(with(&["a"]));
        assert!(!with(&["a", "c"]));
        assert!(!with(&[]));
        assert!(matches::<()>(&flatten(None, 1).unwrap(), |_| Ok(false)).unwrap(), "no filter: all");
    }

    #[test]
    fn deep_or_large_filters_are_refused_not_followed() {
        let mut filter = json!({"name": "x"});
        // Deeper than serde_json lets a request nest (128), shallow enough for its own
        // recursive clone and drop in this test.
        for _ in 0..1_000 {
            filter = json!({"operator": "NOT", "conditions": [filter]});
        }
        assert_eq!(flatten(Some(filter.clone()), 64).unwrap_err().kind, "unsupportedFilter");
        let nodes = flatten(Some(filter), 2_000).unwrap();
        assert_eq!(nodes.len(), 1_001);
        assert!(matches::<()>(&nodes, |_| Ok(true)).unwrap(), "an even number of NOTs");
        assert_eq!(
            flatten(Some(json!({"operator": "XOR", "conditions": []})), 10).unwrap_err().kind,
            "invalidArguments"
        );
        assert_eq!(flatten(Some(json!([1])), 10).unwrap_err().kind, "invalidArguments");
    }
}
