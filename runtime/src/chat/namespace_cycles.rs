//! Refuses chat templates that could make a Jinja `namespace` contain itself.
//!
//! A namespace is the only mutable value in Jinja: `{% set ns.x = ns %}` (or `[ns]`, or a
//! variable that holds it) makes a cycle, and minijinja's string conversion, comparison and
//! JSON of that value then recurse until the thread's stack overflows, which aborts the
//! process: no error, no unwinding. A chat template comes from the model file, so a hostile
//! GGUF would kill the app that loads it. Fuel does not help (the recursion runs inside one
//! instruction) and no hook exists at the assignment, so the template's syntax tree is checked
//! once, when it is compiled.
//!
//! The check is a conservative taint analysis over names, ignoring scopes:
//! - a name is *tainted* (may hold a namespace, or a value containing one) when any binding
//!   of it (`set`, `for`, `with`, macro parameters bound from any call's arguments, `loop`)
//!   comes from an expression that is not *clean*; `namespace` itself is tainted;
//! - a name is a *plain namespace* when every binding of it is `namespace(...)` with clean
//!   arguments: its attributes are clean, since no assignment below stores a tainted value;
//! - an expression is clean when it names no tainted variable, except as the object of an
//!   attribute or item lookup on a plain namespace (`ns.count + 1`), and calls no
//!   `namespace(...)`.
//!
//! Every `set a.b = expr` must have a clean `expr`. The real templates Tern is tested with
//! (Llama 3.x, Qwen2.5/3, Gemma 2/3, Phi-3.5, SmolLM3) all pass; a template that fails gets
//! [`TemplateError::Syntax`](super::TemplateError::Syntax) naming the line.
//!
//! Written by hand because minijinja (pinned: its syntax tree is an unstable API) has no
//! cycle guard, and this is the one place a file's bytes decide what the renderer stores.

use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::machinery::parse;
use minijinja::syntax::SyntaxConfig;

/// One binding: the names a statement assigns and the expressions their values come from.
struct Binding<'t, 'a> {
    names: Vec<&'a str>,
    sources: Vec<&'t Expr<'a>>,
    /// A `set name = namespace(...)`: a candidate plain namespace.
    namespace_call: bool,
}

/// Everything the analysis needs from one template.
#[derive(Default)]
struct Facts<'t, 'a> {
    bindings: Vec<Binding<'t, 'a>>,
    /// `set a.b = expr` statements: the expression and its line.
    stores: Vec<(&'t Expr<'a>, u16)>,
    /// Every call argument in the template: what macro parameters may be bound to.
    call_args: Vec<&'t Expr<'a>>,
    macro_params: Vec<&'a str>,
    /// The iterables of every `for`: what `loop` (its `previtem`, `nextitem`) may hold.
    loop_sources: Vec<&'t Expr<'a>>,
}

/// Checks `source` (already accepted by minijinja with `syntax`); `Err` carries the message
/// naming the line of the first assignment that could store a namespace in a namespace.
pub(super) fn check(source: &str, syntax: SyntaxConfig) -> Result<(), String> {
    let tree = parse(source, "chat_template", syntax).map_err(|e| e.to_string())?;
    let mut facts = Facts::default();
    facts.stmt(&tree);
    let params: Vec<&str> = facts
        .macro_params
        .iter()
        .copied()
        .chain(["varargs", "kwargs"])
        .collect();
    let mut bindings = core::mem::take(&mut facts.bindings);
    bindings.push(Binding {
        names: params,
        sources: facts.call_args.clone(),
        namespace_call: false,
    });
    bindings.push(Binding {
        names: vec!["loop"],
        sources: facts.loop_sources.clone(),
        namespace_call: false,
    });

    // Plain namespaces: names whose every binding is a `namespace(...)` call.
    let mut all_namespace_calls: BTreeMap<&str, bool> = BTreeMap::new();
    for b in &bindings {
        for name in &b.names {
            let entry = all_namespace_calls.entry(name).or_insert(true);
            *entry &= b.namespace_call;
        }
    }
    let mut plain: BTreeSet<&str> = all_namespace_calls
        .iter()
        .filter(|(_, &all)| all)
        .map(|(&n, _)| n)
        .collect();
    let mut tainted: BTreeSet<&str> = BTreeSet::from(["namespace"]);
    loop {
        let mut changed = false;
        for b in &bindings {
            let clean = b
                .sources
                .iter()
                .all(|e| is_clean(e, &tainted, &plain, true));
            // A plain namespace is itself tainted (it is a namespace); its attributes are
            // clean only while its constructor's arguments are.
            if b.namespace_call || !clean {
                for name in &b.names {
                    changed |= tainted.insert(name);
                }
            }
            if b.namespace_call && !clean {
                for name in &b.names {
                    changed |= plain.remove(name);
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (expr, line) in &facts.stores {
        if !is_clean(expr, &tainted, &plain, false) {
            return Err(format!(
                "line {line}: the value stored in a namespace attribute may hold a namespace \
                 (a cycle would crash the renderer); Tern refuses such templates"
            ));
        }
    }
    Ok(())
}

/// Whether `e` cannot evaluate to a namespace or a value containing one. In a binding's
/// source (`in_binding`), the `namespace(...)` call itself is judged by its arguments: the
/// binding is recorded as a namespace call instead.
fn is_clean(
    e: &Expr<'_>,
    tainted: &BTreeSet<&str>,
    plain: &BTreeSet<&str>,
    in_binding: bool,
) -> bool {
    let clean = |e: &Expr<'_>| is_clean(e, tainted, plain, false);
    let args_clean = |args: &[CallArg<'_>]| args.iter().all(|a| clean(arg_expr(a)));
    match e {
        Expr::Var(v) => !tainted.contains(v.id),
        Expr::Const(_) => true,
        Expr::GetAttr(g) => match &g.expr {
            Expr::Var(v) if plain.contains(v.id) => true,
            inner => clean(inner),
        },
        Expr::GetItem(g) => {
            clean(&g.subscript_expr)
                && match &g.expr {
                    Expr::Var(v) if plain.contains(v.id) => true,
                    inner => clean(inner),
                }
        }
        Expr::Call(c) => {
            if let Expr::Var(v) = &c.expr {
                if v.id == "namespace" {
                    return in_binding && args_clean(&c.args);
                }
            }
            clean(&c.expr) && args_clean(&c.args)
        }
        Expr::Slice(s) => {
            clean(&s.expr)
                && [&s.start, &s.stop, &s.step]
                    .into_iter()
                    .flatten()
                    .all(&clean)
        }
        Expr::UnaryOp(u) => clean(&u.expr),
        Expr::BinOp(b) => clean(&b.left) && clean(&b.right),
        Expr::Compare(c) => clean(&c.expr) && c.ops.iter().all(|op| clean(&op.expr)),
        Expr::IfExpr(i) => {
            clean(&i.test_expr) && clean(&i.true_expr) && i.false_expr.as_ref().is_none_or(&clean)
        }
        Expr::Filter(f) => f.expr.as_ref().is_none_or(&clean) && args_clean(&f.args),
        Expr::Test(t) => clean(&t.expr) && args_clean(&t.args),
        Expr::List(l) => l.items.iter().all(&clean),
        Expr::Tuple(t) => t.items.iter().all(&clean),
        Expr::Map(m) => m.keys.iter().chain(&m.values).all(clean),
    }
}

fn arg_expr<'t, 'a>(a: &'t CallArg<'a>) -> &'t Expr<'a> {
    match a {
        CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => e,
    }
}

/// The variable names an assignment target binds (`a`, `a, b`, `(a, (b, c))`).
fn target_names<'a>(e: &Expr<'a>, out: &mut Vec<&'a str>) {
    match e {
        Expr::Var(v) => out.push(v.id),
        Expr::Tuple(t) => t.items.iter().for_each(|e| target_names(e, out)),
        Expr::List(l) => l.items.iter().for_each(|e| target_names(e, out)),
        _ => {}
    }
}

impl<'t, 'a> Facts<'t, 'a> {
    fn bind(&mut self, target: &Expr<'a>, source: &'t Expr<'a>) {
        let mut names = Vec::new();
        target_names(target, &mut names);
        let namespace_call = matches!(source, Expr::Call(c)
            if matches!(&c.expr, Expr::Var(v) if v.id == "namespace"));
        self.bindings.push(Binding {
            names,
            sources: vec![source],
            namespace_call,
        });
    }

    fn stmts(&mut self, body: &'t [Stmt<'a>]) {
        body.iter().for_each(|s| self.stmt(s));
    }

    fn stmt(&mut self, s: &'t Stmt<'a>) {
        match s {
            Stmt::Template(t) => self.stmts(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.iter);
                if let Some(e) = &f.filter_expr {
                    self.expr(e);
                }
                self.bind(&f.target, &f.iter);
                self.loop_sources.push(&f.iter);
                if f.recursive {
                    // `loop(items)` rebinds the target to what the call passes.
                    let mut names = Vec::new();
                    target_names(&f.target, &mut names);
                    self.macro_params.extend(names);
                }
                self.stmts(&f.body);
                self.stmts(&f.else_body);
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.stmts(&i.true_body);
                self.stmts(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                for (target, source) in &w.assignments {
                    self.expr(source);
                    self.bind(target, source);
                }
                self.stmts(&w.body);
            }
            Stmt::Set(set) => {
                self.expr(&set.expr);
                match &set.target {
                    Expr::GetAttr(_) => self.stores.push((&set.expr, set.span().start_line)),
                    target => self.bind(target, &set.expr),
                }
            }
            // `{% set x %}…{% endset %}` stores the rendered text: a string.
            Stmt::SetBlock(b) => {
                if let Some(f) = &b.filter {
                    self.expr(f);
                }
                self.stmts(&b.body);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.stmts(&a.body);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.stmts(&f.body);
            }
            Stmt::Macro(m) => self.macro_decl(m),
            Stmt::CallBlock(c) => {
                self.call(&c.call);
                self.macro_decl(&c.macro_decl);
            }
            Stmt::Do(d) => self.call(&d.call),
        }
    }

    fn macro_decl(&mut self, m: &'t ast::Macro<'a>) {
        for arg in &m.args {
            target_names(arg, &mut self.macro_params);
        }
        m.defaults.iter().for_each(|e| self.expr(e));
        self.call_args.extend(m.defaults.iter());
        self.stmts(&m.body);
    }

    fn call(&mut self, c: &'t ast::Call<'a>) {
        self.expr(&c.expr);
        for a in &c.args {
            let e = arg_expr(a);
            self.call_args.push(e);
            self.expr(e);
        }
    }

    /// Records the call arguments inside `e` (macro parameters may be bound to them).
    fn expr(&mut self, e: &'t Expr<'a>) {
        match e {
            Expr::Var(_) | Expr::Const(_) => {}
            Expr::Call(c) => self.call(c),
            Expr::GetAttr(g) => self.expr(&g.expr),
            Expr::GetItem(g) => {
                self.expr(&g.expr);
                self.expr(&g.subscript_expr);
            }
            Expr::Slice(s) => {
                self.expr(&s.expr);
                for e in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(e);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr);
                c.ops.iter().for_each(|op| self.expr(&op.expr));
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(e) = &i.false_expr {
                    self.expr(e);
                }
            }
            Expr::Filter(f) => {
                if let Some(e) = &f.expr {
                    self.expr(e);
                }
                for a in &f.args {
                    let e = arg_expr(a);
                    self.call_args.push(e);
                    self.expr(e);
                }
            }
            Expr::Test(t) => {
                self.expr(&t.expr);
                for a in &t.args {
                    self.expr(arg_expr(a));
                }
            }
            Expr::List(l) => l.items.iter().for_each(|e| self.expr(e)),
            Expr::Tuple(t) => t.items.iter().for_each(|e| self.expr(e)),
            Expr::Map(m) => m.keys.iter().chain(&m.values).for_each(|e| self.expr(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax() -> SyntaxConfig {
        SyntaxConfig::default()
    }

    fn refused(src: &str) -> bool {
        check(src, syntax()).is_err()
    }

    #[test]
    fn templates_that_could_store_a_namespace_in_itself_are_refused() {
        for src in [
            "{% set ns = namespace(x=0) %}{% set ns.x = ns %}{{ 'a' ~ ns.x }}",
            "{% set ns = namespace(x=0) %}{% set ns.x = [ns] %}",
            "{% set ns = namespace(x=0) %}{% set a = ns %}{% set ns.x = a %}",
            "{% set ns = namespace(x=0) %}{% set l = [1, ns] %}{% set ns.x = l[1] %}",
            "{% set ns = namespace(x=0) %}{% for n in [ns] %}{% set ns.x = n %}{% endfor %}",
            "{% set ns = namespace(x=0) %}{% for n in [ns] %}{% set ns.x = loop.previtem %}{% endfor %}",
            "{% set ns = namespace(x=0) %}{% macro m(v) %}{% set ns.x = v %}{% endmacro %}{{ m(ns) }}",
            "{% set ns = namespace(x=0) %}{% set ns.x = namespace(y=ns) %}",
            "{% set ns = namespace(x=0) %}{% set ns2 = namespace(y=ns) %}{% set ns.x = ns2.y %}",
            "{% set f = namespace %}{% set ns = f() %}{% set ns.x = ns %}",
            "{% set ns = namespace(x=0) %}{% with a = ns %}{% set ns.x = a %}{% endwith %}",
            "{% set ns = namespace(x=0) %}{% set ns.x = {'k': ns} %}",
        ] {
            assert!(refused(src), "not refused: {src}");
        }
    }

    #[test]
    fn the_patterns_chat_templates_use_pass() {
        for src in [
            "{% set ns = namespace(count=0, last='') %}{% for m in messages %}\
             {% set ns.count = ns.count + 1 %}{% set ns.last = m.content %}{% endfor %}",
            "{% set ns = namespace(found=false) %}{% set ns.found = ns.found or true %}",
            "{% set ns = namespace(msgs=[]) %}{% for m in messages %}\
             {% set ns.msgs = ns.msgs + [m] %}{% endfor %}{{ ns.msgs | length }}",
            "{% set ns = namespace(i=0) %}{% set ns2 = namespace(j=1) %}{% set ns.i = ns2.j %}",
            "{% set ns = namespace(x=0) %}{% set ns.x = ns['x'] + 1 %}",
            "{% macro render(m) %}{{ m.content }}{% endmacro %}{% set ns = namespace(s='') %}\
             {% set ns.s = render(messages[0]) %}",
        ] {
            assert!(!refused(src), "refused: {src}");
        }
    }
}
