//! Nesting for XML and JSON: output names with `/` (`contact/name/first`)
//! become nested elements or objects; in XML a last part `@x` is an attribute.

/// One level of nesting: attributes (XML only) and children in config order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tree {
    /// (attribute name, column index)
    pub attrs: Vec<(String, usize)>,
    pub children: Vec<Child>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Child {
    /// (name, column index)
    Leaf(String, usize),
    Group(String, Tree),
}

impl Tree {
    /// Build from output names (index = column index). `attributes` enables `@x`.
    pub fn build(names: &[&str], attributes: bool) -> Result<Tree, String> {
        let mut root = Tree::default();
        for (col, name) in names.iter().enumerate() {
            let segs: Vec<&str> = name.split('/').collect();
            if segs.iter().any(|s| s.is_empty()) {
                return Err(format!("{name:?}: empty part in the path"));
            }
            root.insert(&segs, col, name, attributes)?;
        }
        Ok(root)
    }

    fn insert(
        &mut self,
        segs: &[&str],
        col: usize,
        full: &str,
        attributes: bool,
    ) -> Result<(), String> {
        let head = segs[0];
        if segs.len() == 1 {
            if attributes && head.starts_with('@') {
                self.attrs.push((head[1..].to_string(), col));
                return Ok(());
            }
            if self
                .children
                .iter()
                .any(|c| matches!(c, Child::Group(n, _) | Child::Leaf(n, _) if n == head))
            {
                return Err(format!("{full:?}: {head:?} is already used at this level"));
            }
            self.children.push(Child::Leaf(head.to_string(), col));
            return Ok(());
        }
        if attributes && head.starts_with('@') {
            return Err(format!(
                "{full:?}: an attribute (@) can only be the last part"
            ));
        }
        for c in self.children.iter_mut() {
            match c {
                Child::Group(n, t) if n == head => {
                    return t.insert(&segs[1..], col, full, attributes)
                }
                Child::Leaf(n, _) if n == head => {
                    return Err(format!("{full:?}: {head:?} is both a value and a group"))
                }
                _ => {}
            }
        }
        let mut t = Tree::default();
        t.insert(&segs[1..], col, full, attributes)?;
        self.children.push(Child::Group(head.to_string(), t));
        Ok(())
    }

    /// Every name used (element, attribute, key), for validation.
    pub fn names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.attrs.iter().map(|(n, _)| n.as_str()).collect();
        for c in &self.children {
            match c {
                Child::Leaf(n, _) => out.push(n),
                Child::Group(n, t) => {
                    out.push(n);
                    out.extend(t.names());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_in_first_seen_order() {
        let t = Tree::build(
            &[
                "@id",
                "contact/name/first",
                "contact/email",
                "contact/name/last",
                "state",
            ],
            true,
        )
        .expect("tree");
        assert_eq!(t.attrs, vec![("id".to_string(), 0)]);
        let Child::Group(name, contact) = &t.children[0] else {
            panic!("{t:?}")
        };
        assert_eq!(name, "contact");
        let Child::Group(_, n) = &contact.children[0] else {
            panic!()
        };
        assert_eq!(
            n.children,
            vec![
                Child::Leaf("first".into(), 1),
                Child::Leaf("last".into(), 3)
            ]
        );
        assert_eq!(t.children[1], Child::Leaf("state".into(), 4));
        assert!(Tree::build(&["a", "a/b"], true).is_err());
        assert!(Tree::build(&["a/@x/b"], true).is_err());
    }
}
