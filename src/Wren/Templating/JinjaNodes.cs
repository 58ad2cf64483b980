using System.Text;

namespace Wren.Templating;

/// <summary>The variables visible at one point of a render: Jinja's scopes (template, loop iteration, macro call).</summary>
sealed class Scope(Scope? parent, bool strict)
{
    readonly Dictionary<string, object?> variables = [];
    readonly Scope? parent = parent;

    public bool Strict => strict;

    public Scope Child() => new(this, strict);

    public object? Lookup(string name)
    {
        for (var scope = this; scope is not null; scope = scope.parent)
            if (scope.variables.TryGetValue(name, out var value)) return value;
        return new Undefined($"'{name}' is undefined", strict);
    }

    public void Set(string name, object? value) => variables[name] = value;
}

enum Flow { Normal, Break, Continue }

abstract record Node(int Line, int Column);

abstract record Expr(int Line, int Column) : Node(Line, Column)
{
    public abstract object? Eval(Scope scope);
}

abstract record Stmt(int Line, int Column) : Node(Line, Column)
{
    public abstract Flow Render(Scope scope, StringBuilder output);

    /// <summary>Renders statements in order, stopping at break/continue; runtime errors get the failing statement's position.</summary>
    public static Flow RenderAll(IReadOnlyList<Stmt> body, Scope scope, StringBuilder output)
    {
        foreach (var stmt in body)
        {
            Flow flow;
            try
            {
                flow = stmt.Render(scope, output);
            }
            catch (JinjaRuntimeException e)
            {
                throw new WrenException($"template line {stmt.Line}, column {stmt.Column}: {e.Message}");
            }
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }
}

sealed record Constant(object? Value, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope) => Value;
}

sealed record ListLiteral(IReadOnlyList<Expr> Items, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope) => Items.Select(x => x.Eval(scope)).ToList();
}

sealed record TupleLiteral(IReadOnlyList<Expr> Items, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope) => new PyTuple(Items.Select(x => x.Eval(scope)));
}

sealed record DictLiteral(IReadOnlyList<(Expr Key, Expr Value)> Pairs, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope)
    {
        var dict = new Dictionary<string, object?>();
        foreach (var (key, value) in Pairs)
        {
            object? k = key.Eval(scope);
            string name = k as string ?? throw new JinjaRuntimeException($"dict keys must be strings here, not {Py.TypeName(k)}");
            dict[name] = value.Eval(scope);
        }
        return dict;
    }
}

sealed record NameRef(string Name, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope) => scope.Lookup(Name);
}

sealed record AttributeRef(Expr Target, string Name, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope) => Py.GetAttribute(Target.Eval(scope), Name, scope.Strict);
}

sealed record ItemRef(Expr Target, Expr Key, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope) => Py.GetItem(Target.Eval(scope), Key.Eval(scope), scope.Strict);
}

sealed record SliceRef(Expr Target, Expr? Start, Expr? Stop, Expr? Step, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope) =>
        Py.Slice(Target.Eval(scope), Start?.Eval(scope), Stop?.Eval(scope), Step?.Eval(scope));
}

/// <summary>Positional and keyword argument expressions of a call, filter or test.</summary>
sealed record ArgumentList(IReadOnlyList<Expr> Positional, IReadOnlyList<(string Name, Expr Value)> Named)
{
    public static ArgumentList Empty { get; } = new([], []);

    public Arguments Eval(Scope scope) => new(
        Positional.Select(x => x.Eval(scope)).ToList(),
        Named.ToDictionary(x => x.Name, x => x.Value.Eval(scope)),
        scope.Strict);
}

sealed record Call(Expr Callee, ArgumentList Arguments, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope) => Invoke(scope, Arguments.Eval(scope));

    public object? Invoke(Scope scope, Arguments args) => Callee.Eval(scope) switch
    {
        JinjaFunction f => f.Invoke(args),
        Undefined u => throw u.Fail(),
        var other => throw new JinjaRuntimeException($"'{Py.TypeName(other)}' object is not callable"),
    };
}

sealed record FilterCall(Expr Value, string Name, JinjaBuiltins.Filter Filter, ArgumentList Arguments, int Line, int Column)
    : Expr(Line, Column)
{
    public override object? Eval(Scope scope) => Filter(Value.Eval(scope), Arguments.Eval(scope));
}

sealed record TestCall(Expr Value, string Name, JinjaBuiltins.Test Test, ArgumentList Arguments, bool Negated, int Line, int Column)
    : Expr(Line, Column)
{
    public override object? Eval(Scope scope) => Test(Value.Eval(scope), Arguments.Eval(scope)) != Negated;
}

sealed record Unary(string Op, Expr Operand, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope)
    {
        object? v = Operand.Eval(scope);
        return Op switch
        {
            "not" => !Py.Truthy(v),
            "-" when v is double d => (object?)-d,
            "-" when Py.IsIntegral(v) => -Py.AsLong(v),
            "+" when v is double d => d,
            "+" when Py.IsIntegral(v) => Py.AsLong(v),
            _ => v is Undefined u ? throw u.Fail()
                : throw new JinjaRuntimeException($"bad operand type for unary {Op}: '{Py.TypeName(v)}'"),
        };
    }
}

sealed record Binary(string Op, Expr Left, Expr Right, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope)
    {
        object? left = Left.Eval(scope);
        switch (Op)
        {
            case "and": return Py.Truthy(left) ? Right.Eval(scope) : left;
            case "or": return Py.Truthy(left) ? left : Right.Eval(scope);
            case "~": return Py.Str(left) + Py.Str(Right.Eval(scope));
            default: return Py.Arithmetic(Op, left, Right.Eval(scope));
        }
    }
}

/// <summary>A comparison chain <c>a &lt; b == c</c> (each link must hold, as in Python).</summary>
sealed record Comparison(Expr First, IReadOnlyList<(string Op, Expr Operand)> Rest, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope)
    {
        object? left = First.Eval(scope);
        foreach (var (op, operand) in Rest)
        {
            object? right = operand.Eval(scope);
            bool holds = op switch
            {
                "==" => Py.Equal(left, right),
                "!=" => !Py.Equal(left, right),
                "<" => Py.Compare(left, right, op) < 0,
                "<=" => Py.Compare(left, right, op) <= 0,
                ">" => Py.Compare(left, right, op) > 0,
                ">=" => Py.Compare(left, right, op) >= 0,
                "in" => Py.Contains(right, left),
                _ => !Py.Contains(right, left),
            };
            if (!holds) return false;
            left = right;
        }
        return true;
    }
}

sealed record Conditional(Expr Test, Expr Then, Expr? Else, int Line, int Column) : Expr(Line, Column)
{
    public override object? Eval(Scope scope) =>
        Py.Truthy(Test.Eval(scope)) ? Then.Eval(scope)
        : Else is null ? new Undefined("the inline if-expression evaluated to false and no else section was defined", scope.Strict)
        : Else.Eval(scope);
}

sealed record TextStmt(string Text, int Line, int Column) : Stmt(Line, Column)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        output.Append(Text);
        return Flow.Normal;
    }
}

sealed record OutputStmt(Expr Value, int Line, int Column) : Stmt(Line, Column)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        output.Append(Py.Str(Value.Eval(scope)));
        return Flow.Normal;
    }
}

sealed record IfStmt(IReadOnlyList<(Expr Test, IReadOnlyList<Stmt> Body)> Branches, IReadOnlyList<Stmt> Else, int Line, int Column)
    : Stmt(Line, Column)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        foreach (var (test, body) in Branches)
            if (Py.Truthy(test.Eval(scope))) return RenderAll(body, scope, output);
        return RenderAll(Else, scope, output);
    }
}

sealed record ForStmt(
    IReadOnlyList<string> Targets, Expr Items, Expr? Filter, IReadOnlyList<Stmt> Body, IReadOnlyList<Stmt> Else, int Line, int Column)
    : Stmt(Line, Column)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        var items = Py.Iterate(Items.Eval(scope));
        if (Filter is not null) items = items.Where(item => Py.Truthy(Filter.Eval(Bind(scope, item)))).ToList();
        var loop = new LoopInfo(items, scope.Strict);
        for (int i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var iteration = Bind(scope, items[i]);
            iteration.Set("loop", loop);
            if (RenderAll(Body, iteration, output) == Flow.Break) break;
        }
        return items.Count == 0 ? RenderAll(Else, scope.Child(), output) : Flow.Normal;
    }

    Scope Bind(Scope scope, object? item)
    {
        var iteration = scope.Child();
        Assign.Unpack(Targets, item, iteration);
        return iteration;
    }
}

static class Assign
{
    /// <summary>Binds one value to one name, or unpacks a sequence into several (<c>for k, v in d.items()</c>).</summary>
    public static void Unpack(IReadOnlyList<string> targets, object? value, Scope scope)
    {
        if (targets.Count == 1)
        {
            scope.Set(targets[0], value);
            return;
        }
        var items = Py.Iterate(value);
        if (items.Count != targets.Count)
            throw new JinjaRuntimeException($"cannot unpack {items.Count} values into {targets.Count} names");
        for (int i = 0; i < targets.Count; i++) scope.Set(targets[i], items[i]);
    }
}

sealed record SetStmt(IReadOnlyList<string> Targets, string? Attribute, Expr Value, int Line, int Column) : Stmt(Line, Column)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        object? value = Value.Eval(scope);
        if (Attribute is null) Assign.Unpack(Targets, value, scope);
        else if (scope.Lookup(Targets[0]) is Namespace ns) ns.Attributes[Attribute] = value;
        else throw new JinjaRuntimeException($"cannot assign attribute on non-namespace object '{Targets[0]}'");
        return Flow.Normal;
    }
}

sealed record SetBlockStmt(string Target, IReadOnlyList<Stmt> Body, int Line, int Column) : Stmt(Line, Column)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        var captured = new StringBuilder();
        RenderAll(Body, scope, captured);
        scope.Set(Target, captured.ToString());
        return Flow.Normal;
    }
}

/// <summary>A block whose body renders as is (Hugging Face's <c>{% generation %}</c> marks assistant text this way).</summary>
sealed record BlockStmt(IReadOnlyList<Stmt> Body, int Line, int Column) : Stmt(Line, Column)
{
    public override Flow Render(Scope scope, StringBuilder output) => RenderAll(Body, scope, output);
}

sealed record LoopControlStmt(Flow Flow, int Line, int Column) : Stmt(Line, Column)
{
    public override Flow Render(Scope scope, StringBuilder output) => Flow;
}

sealed record MacroStmt(string Name, IReadOnlyList<(string Name, Expr? Default)> Parameters, IReadOnlyList<Stmt> Body, int Line, int Column)
    : Stmt(Line, Column)
{
    public override Flow Render(Scope scope, StringBuilder output)
    {
        scope.Set(Name, new JinjaFunction(Name, args => Call(scope, args)));
        return Flow.Normal;
    }

    string Call(Scope defining, Arguments args)
    {
        if (args.Positional.Count > Parameters.Count)
            throw new JinjaRuntimeException($"macro '{Name}' takes not more than {Parameters.Count} argument(s)");
        foreach (string key in args.Named.Keys)
            if (key != CallBlockStmt.Caller && !Parameters.Any(p => p.Name == key))
                throw new JinjaRuntimeException($"macro '{Name}' takes no keyword argument '{key}'");
        var scope = defining.Child();
        if (args.Named.TryGetValue(CallBlockStmt.Caller, out var caller)) scope.Set(CallBlockStmt.Caller, caller);
        for (int i = 0; i < Parameters.Count; i++)
        {
            var (name, fallback) = Parameters[i];
            scope.Set(name, i < args.Positional.Count ? args.Positional[i]
                : args.Named.TryGetValue(name, out var value) ? value
                : fallback is not null ? fallback.Eval(scope)
                : new Undefined($"parameter '{name}' was not provided", scope.Strict));
        }
        var output = new StringBuilder();
        RenderAll(Body, scope, output);
        return output.ToString();
    }
}

/// <summary><c>{% call m(args) %}body{% endcall %}</c>: calls the macro with <c>caller()</c> rendering the body.</summary>
sealed record CallBlockStmt(Call Call, IReadOnlyList<Stmt> Body, int Line, int Column) : Stmt(Line, Column)
{
    public const string Caller = "caller";

    public override Flow Render(Scope scope, StringBuilder output)
    {
        var args = Call.Arguments.Eval(scope);
        args.Named[Caller] = new JinjaFunction(Caller, _ =>
        {
            var captured = new StringBuilder();
            RenderAll(Body, scope.Child(), captured);
            return captured.ToString();
        });
        output.Append(Py.Str(Call.Invoke(scope, args)));
        return Flow.Normal;
    }
}
