using System.Globalization;

namespace Wren.Templating;

/// <summary>
/// Builds the statement tree from tokens, with Jinja2's expression grammar and precedence
/// (<c>jinja2.parser.Parser</c>: conditional, or, and, not, comparison, + -, ~, * / // %, **, unary, postfix, filters and tests).
/// </summary>
sealed class JinjaParser
{
    static readonly HashSet<string> UnsupportedTags =
        ["include", "import", "from", "extends", "block", "filter", "with", "autoescape", "do", "raw", "trans", "endraw"];

    static readonly HashSet<string> ComparisonOperators = ["==", "!=", "<", "<=", ">", ">="];

    readonly List<Token> tokens;
    readonly string source;
    readonly Func<string, string> literal;
    int index;

    JinjaParser(List<Token> tokens, string source, Func<string, string> literal)
    {
        this.tokens = tokens;
        this.source = source;
        this.literal = literal;
    }

    /// <summary>The statements of a template; <paramref name="literal"/> rewrites each literal text (template data and string
    /// constants) as it becomes a node, the identity when null.</summary>
    public static List<Stmt> Parse(List<Token> tokens, string source, Func<string, string>? literal = null)
    {
        return new JinjaParser(tokens, source, literal ?? (text => text)).ParseBody([]);
    }

    Token Current => tokens[index];

    Token Next() => tokens[index++];

    (int Line, int Column) At(Token token) => JinjaLexer.Position(source, token.Offset);

    JinjaSyntaxException Error(Token token, string message) => new(token.Offset, message);

    static string Describe(Token token) => token.Kind switch
    {
        TokenKind.End => "end of template",
        TokenKind.BlockEnd => "end of block tag '%}'",
        TokenKind.VariableEnd => "end of output tag '}}'",
        TokenKind.String => "string literal",
        _ => $"'{token.Text}'",
    };

    void Expect(TokenKind kind, string text, string what)
    {
        if (Current.Kind != kind || (text.Length > 0 && Current.Text != text))
            throw Error(Current, $"expected {what}, found {Describe(Current)}");
        index++;
    }

    void ExpectBlockEnd() => Expect(TokenKind.BlockEnd, "", "end of block tag '%}'");

    string ExpectName()
    {
        if (Current.Kind != TokenKind.Name) throw Error(Current, $"expected a name, found {Describe(Current)}");
        return Next().Text;
    }

    // Statements up to one of the end tags (left unconsumed: the caller reads which one it was).
    List<Stmt> ParseBody(string[] endTags)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var token = Current;
            var (line, column) = At(token);
            switch (token.Kind)
            {
                case TokenKind.Data:
                    index++;
                    body.Add(new TextStmt(literal(token.Text), line, column));
                    break;
                case TokenKind.VariableBegin:
                    index++;
                    var value = ParseExpression();
                    Expect(TokenKind.VariableEnd, "", "end of output tag '}}'");
                    body.Add(new OutputStmt(value, line, column));
                    break;
                case TokenKind.BlockBegin:
                    var tag = tokens[index + 1];
                    if (tag.Kind == TokenKind.Name && endTags.Contains(tag.Text)) return body;
                    index++;
                    body.Add(ParseStatement(line, column));
                    break;
                case TokenKind.End:
                    if (endTags.Length > 0)
                    {
                        string expected = string.Join(" or ", endTags.Select(t => $"'{{% {t} %}}'"));
                        throw Error(token, $"unexpected end of template; expected {expected}");
                    }
                    return body;
                default:
                    throw Error(token, $"unexpected {Describe(token)}");
            }
        }
    }

    Stmt ParseStatement(int line, int column)
    {
        var tagToken = Current;
        string tag = ExpectName();
        switch (tag)
        {
            case "if": return ParseIf(line, column);
            case "for": return ParseFor(line, column);
            case "set": return ParseSet(line, column);
            case "macro": return ParseMacro(line, column);
            case "call": return ParseCallBlock(line, column);
            case "break" or "continue":
                ExpectBlockEnd();
                return new LoopControlStmt(tag == "break" ? Flow.Break : Flow.Continue, line, column);
            case "generation":
                ExpectBlockEnd();
                var body = ParseBody(["endgeneration"]);
                EndTag("endgeneration");
                return new BlockStmt(body, line, column);
        }
        if (UnsupportedTags.Contains(tag))
            throw Error(tagToken,
                $"unsupported Jinja tag '{{% {tag} %}}' (Wren's subset has if, for, set, macro, call, break, continue, generation)");
        throw Error(tagToken, tag.StartsWith("end", StringComparison.Ordinal) || tag is "elif" or "else"
            ? $"unexpected '{{% {tag} %}}'"
            : $"unknown tag '{{% {tag} %}}'");
    }

    void EndTag(string name)
    {
        Expect(TokenKind.BlockBegin, "", $"'{{% {name} %}}'");
        Expect(TokenKind.Name, name, $"'{{% {name} %}}'");
        ExpectBlockEnd();
    }

    // After ParseBody stopped at an end tag: consume "{% name" and return the name.
    string TagName()
    {
        Expect(TokenKind.BlockBegin, "", "a block tag");
        return ExpectName();
    }

    Stmt ParseIf(int line, int column)
    {
        var branches = new List<(Expr, IReadOnlyList<Stmt>)>();
        IReadOnlyList<Stmt> elseBody = [];
        var test = ParseExpression();
        while (true)
        {
            ExpectBlockEnd();
            branches.Add((test, ParseBody(["elif", "else", "endif"])));
            string tag = TagName();
            if (tag == "elif")
            {
                test = ParseExpression();
                continue;
            }
            if (tag == "else")
            {
                ExpectBlockEnd();
                elseBody = ParseBody(["endif"]);
                EndTag("endif");
            }
            else ExpectBlockEnd();
            return new IfStmt(branches, elseBody, line, column);
        }
    }

    Stmt ParseFor(int line, int column)
    {
        var targets = ParseTargets();
        Expect(TokenKind.Name, "in", "'in'");
        var items = ParseExpression(withCondition: false);
        Expr? filter = null;
        if (Current.IsName("if"))
        {
            index++;
            filter = ParseExpression();
        }
        if (Current.IsName("recursive")) throw Error(Current, "unsupported Jinja construct: recursive for loops");
        ExpectBlockEnd();
        var body = ParseBody(["else", "endfor"]);
        IReadOnlyList<Stmt> elseBody = [];
        if (TagName() == "else")
        {
            ExpectBlockEnd();
            elseBody = ParseBody(["endfor"]);
            EndTag("endfor");
        }
        else ExpectBlockEnd();
        return new ForStmt(targets, items, filter, body, elseBody, line, column);
    }

    List<string> ParseTargets()
    {
        bool parenthesized = Current.IsOperator("(");
        if (parenthesized) index++;
        var names = new List<string> { ExpectName() };
        while (Current.IsOperator(","))
        {
            index++;
            names.Add(ExpectName());
        }
        if (parenthesized) Expect(TokenKind.Operator, ")", "')'");
        return names;
    }

    Stmt ParseSet(int line, int column)
    {
        var targets = ParseTargets();
        string? attribute = null;
        if (targets.Count == 1 && Current.IsOperator("."))
        {
            index++;
            attribute = ExpectName();
        }
        if (Current.IsOperator("="))
        {
            index++;
            var value = ParseTuple();
            ExpectBlockEnd();
            return new SetStmt(targets, attribute, value, line, column);
        }
        if (attribute is not null || targets.Count > 1) throw Error(Current, $"expected '=', found {Describe(Current)}");
        if (Current.IsOperator("|")) throw Error(Current, "unsupported Jinja construct: filters on a block set");
        ExpectBlockEnd();
        var body = ParseBody(["endset"]);
        EndTag("endset");
        return new SetBlockStmt(targets[0], body, line, column);
    }

    Stmt ParseMacro(int line, int column)
    {
        string name = ExpectName();
        Expect(TokenKind.Operator, "(", "'('");
        var parameters = new List<(string, Expr?)>();
        while (!Current.IsOperator(")"))
        {
            if (parameters.Count > 0) Expect(TokenKind.Operator, ",", "','");
            if (Current.IsOperator(")")) break;
            string parameter = ExpectName();
            Expr? fallback = null;
            if (Current.IsOperator("="))
            {
                index++;
                fallback = ParseExpression();
            }
            parameters.Add((parameter, fallback));
        }
        index++;
        ExpectBlockEnd();
        var body = ParseBody(["endmacro"]);
        EndTag("endmacro");
        return new MacroStmt(name, parameters, body, line, column);
    }

    Stmt ParseCallBlock(int line, int column)
    {
        if (Current.IsOperator("(")) throw Error(Current, "unsupported Jinja construct: arguments for caller() in a call block");
        var callToken = Current;
        if (ParseExpression() is not Call call) throw Error(callToken, "expected a macro call after '{% call'");
        ExpectBlockEnd();
        var body = ParseBody(["endcall"]);
        EndTag("endcall");
        return new CallBlockStmt(call, body, line, column);
    }

    // An expression, or several separated by commas (a tuple).
    Expr ParseTuple()
    {
        var (line, column) = At(Current);
        var first = ParseExpression();
        if (!Current.IsOperator(",")) return first;
        var items = new List<Expr> { first };
        while (Current.IsOperator(","))
        {
            index++;
            if (Current.Kind is TokenKind.BlockEnd or TokenKind.VariableEnd) break;
            items.Add(ParseExpression());
        }
        return new TupleLiteral(items, line, column);
    }

    Expr ParseExpression(bool withCondition = true)
    {
        var expr = ParseOr();
        if (!withCondition) return expr;
        while (Current.IsName("if"))
        {
            var (line, column) = At(Next());
            var test = ParseOr();
            Expr? elseExpr = null;
            if (Current.IsName("else"))
            {
                index++;
                elseExpr = ParseExpression();
            }
            expr = new Conditional(test, expr, elseExpr, line, column);
        }
        return expr;
    }

    Expr ParseOr() => ParseBinaryLevel(["or"], ParseAnd);

    Expr ParseAnd() => ParseBinaryLevel(["and"], ParseNot);

    Expr ParseNot()
    {
        if (!Current.IsName("not")) return ParseCompare();
        var (line, column) = At(Next());
        return new Unary("not", ParseNot(), line, column);
    }

    Expr ParseCompare()
    {
        var (line, column) = At(Current);
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && ComparisonOperators.Contains(Current.Text))
                rest.Add((Next().Text, ParseMath1()));
            else if (Current.IsName("in"))
            {
                index++;
                rest.Add(("in", ParseMath1()));
            }
            else if (Current.IsName("not") && tokens[index + 1].IsName("in"))
            {
                index += 2;
                rest.Add(("not in", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new Comparison(first, rest, line, column);
    }

    // Left-associative binary operators (symbols, or the words "and"/"or") over the next level's operands.
    Expr ParseBinaryLevel(string[] operators, Func<Expr> operand)
    {
        var left = operand();
        while (Current.Kind is TokenKind.Operator or TokenKind.Name && operators.Contains(Current.Text))
        {
            var token = Next();
            var (line, column) = At(token);
            left = new Binary(token.Text, left, operand(), line, column);
        }
        return left;
    }

    Expr ParseMath1() => ParseBinaryLevel(["+", "-"], ParseConcat);

    Expr ParseConcat() => ParseBinaryLevel(["~"], ParseMath2);

    Expr ParseMath2() => ParseBinaryLevel(["*", "/", "//", "%"], ParsePow);

    Expr ParsePow() => ParseBinaryLevel(["**"], () => ParseUnary(withFilter: true));

    Expr ParseUnary(bool withFilter)
    {
        Expr node;
        if (Current.IsOperator("-") || Current.IsOperator("+"))
        {
            var token = Next();
            var (line, column) = At(token);
            node = new Unary(token.Text, ParseUnary(withFilter: false), line, column);
        }
        else node = ParsePostfix(ParsePrimary());
        return withFilter ? ParseFilterChain(node) : node;
    }

    Expr ParsePrimary()
    {
        var token = Current;
        var (line, column) = At(token);
        switch (token.Kind)
        {
            case TokenKind.Name:
                index++;
                return token.Text switch
                {
                    "true" or "True" => new Constant(true, line, column),
                    "false" or "False" => new Constant(false, line, column),
                    "none" or "None" => new Constant(null, line, column),
                    _ => new NameRef(token.Text, line, column),
                };
            case TokenKind.String:
                string text = "";
                while (Current.Kind == TokenKind.String) text += Next().Text;
                return new Constant(literal(text), line, column);
            case TokenKind.Integer:
                index++;
                return long.TryParse(token.Text, NumberStyles.None, CultureInfo.InvariantCulture, out long l)
                    ? new Constant(l, line, column)
                    : throw Error(token, $"integer literal {token.Text} is out of range");
            case TokenKind.Float:
                index++;
                return new Constant(double.Parse(token.Text, NumberStyles.Float, CultureInfo.InvariantCulture), line, column);
            case TokenKind.Operator when token.Text == "(":
                index++;
                if (Current.IsOperator(")"))
                {
                    index++;
                    return new TupleLiteral([], line, column);
                }
                var inner = ParseExpression();
                if (Current.IsOperator(","))
                {
                    var items = new List<Expr> { inner };
                    while (Current.IsOperator(","))
                    {
                        index++;
                        if (Current.IsOperator(")")) break;
                        items.Add(ParseExpression());
                    }
                    inner = new TupleLiteral(items, line, column);
                }
                Expect(TokenKind.Operator, ")", "')'");
                return inner;
            case TokenKind.Operator when token.Text == "[":
                index++;
                return new ListLiteral(ParseSequence("]", () => ParseExpression()), line, column);
            case TokenKind.Operator when token.Text == "{":
                index++;
                return new DictLiteral(ParseSequence<(Expr, Expr)>("}", () =>
                {
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":", "':'");
                    return (key, ParseExpression());
                }), line, column);
        }
        throw Error(token, $"unexpected {Describe(token)}");
    }

    List<T> ParseSequence<T>(string close, Func<T> item)
    {
        var items = new List<T>();
        while (!Current.IsOperator(close))
        {
            if (items.Count > 0)
            {
                Expect(TokenKind.Operator, ",", $"',' or '{close}'");
                if (Current.IsOperator(close)) break;
            }
            items.Add(item());
        }
        index++;
        return items;
    }

    Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var token = Current;
            var (line, column) = At(token);
            if (token.IsOperator("."))
            {
                index++;
                var name = Next();
                node = name.Kind switch
                {
                    TokenKind.Name => new AttributeRef(node, name.Text, line, column),
                    TokenKind.Integer =>
                        new ItemRef(node, new Constant(long.Parse(name.Text, CultureInfo.InvariantCulture), line, column), line, column),
                    _ => throw Error(name, $"expected an attribute name after '.', found {Describe(name)}"),
                };
            }
            else if (token.IsOperator("["))
            {
                index++;
                node = ParseSubscript(node, line, column);
            }
            else if (token.IsOperator("("))
            {
                index++;
                node = new Call(node, ParseArguments(), line, column);
            }
            else return node;
        }
    }

    Expr ParseSubscript(Expr target, int line, int column)
    {
        Expr? start = Current.IsOperator(":") ? null : ParseExpression();
        if (!Current.IsOperator(":"))
        {
            Expect(TokenKind.Operator, "]", "']'");
            return new ItemRef(target, start!, line, column);
        }
        index++;
        Expr? stop = Current.IsOperator(":") || Current.IsOperator("]") ? null : ParseExpression();
        Expr? step = null;
        if (Current.IsOperator(":"))
        {
            index++;
            step = Current.IsOperator("]") ? null : ParseExpression();
        }
        Expect(TokenKind.Operator, "]", "']'");
        return new SliceRef(target, start, stop, step, line, column);
    }

    // After "(": positional and name=value arguments up to ")".
    ArgumentList ParseArguments()
    {
        var positional = new List<Expr>();
        var named = new List<(string, Expr)>();
        while (!Current.IsOperator(")"))
        {
            if (positional.Count + named.Count > 0)
            {
                Expect(TokenKind.Operator, ",", "',' or ')'");
                if (Current.IsOperator(")")) break;
            }
            if (Current.IsOperator("*") || Current.IsOperator("**"))
                throw Error(Current, "unsupported Jinja construct: *args/**kwargs in a call");
            if (Current.Kind == TokenKind.Name && tokens[index + 1].IsOperator("="))
            {
                string name = Next().Text;
                index++;
                named.Add((name, ParseExpression()));
            }
            else if (named.Count > 0) throw Error(Current, "positional argument follows keyword argument");
            else positional.Add(ParseExpression());
        }
        index++;
        return new ArgumentList(positional, named);
    }

    Expr ParseFilterChain(Expr node)
    {
        while (true)
        {
            if (Current.IsOperator("|"))
            {
                index++;
                var nameToken = Current;
                var (line, column) = At(nameToken);
                string name = ExpectName();
                if (!JinjaBuiltins.Filters.TryGetValue(name, out var filter))
                    throw Error(nameToken, $"unknown filter '{name}' (Wren's subset has {string.Join(", ", JinjaBuiltins.Filters.Keys)})");
                var args = ArgumentList.Empty;
                if (Current.IsOperator("("))
                {
                    index++;
                    args = ParseArguments();
                }
                node = new FilterCall(node, name, filter, args, line, column);
            }
            else if (Current.IsName("is"))
            {
                var (line, column) = At(Next());
                bool negated = Current.IsName("not");
                if (negated) index++;
                var nameToken = Current;
                string name = ExpectName();
                if (!JinjaBuiltins.Tests.TryGetValue(name, out var test))
                    throw Error(nameToken, $"unknown test '{name}' (Wren's subset has {string.Join(", ", JinjaBuiltins.Tests.Keys)})");
                var args = ArgumentList.Empty;
                if (Current.IsOperator("("))
                {
                    index++;
                    args = ParseArguments();
                }
                else if (StartsTestArgument(Current))
                    args = new ArgumentList([ParsePostfix(ParsePrimary())], []);
                node = new TestCall(node, name, test, args, negated, line, column);
            }
            else if (Current.IsOperator("("))
            {
                var (line, column) = At(Next());
                node = new Call(node, ParseArguments(), line, column);
            }
            else return node;
        }
    }

    // Jinja's "x is divisibleby 3": a test takes one argument without parentheses.
    static bool StartsTestArgument(Token token) =>
        token.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
        || (token.Kind == TokenKind.Name && token.Text is not ("else" or "or" or "and" or "if" or "is" or "in" or "not"))
        || token.IsOperator("[") || token.IsOperator("{");
}
