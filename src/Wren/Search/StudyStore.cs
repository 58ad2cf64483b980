using System.Data.Common;
using Dapper;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Wren.Search;

/// <summary>A study: its name, search space (JSON), dataset folder and state (<c>running</c> or <c>finished</c>).</summary>
public sealed record Study(string Name, string Space, string Data, string State, long Created);

/// <summary>A trial to add: number (creation order, unique in the study), cycle (−1 = initial population) and the candidate.</summary>
public sealed record NewTrial(int Number, int Cycle, string Architecture, string Parent, string Mutation, int Width,
                              double PredictedLatencyMs, bool Feasible, long Parameters);

/// <summary>One trial of a study as stored: the candidate, its status and lease, and its results.</summary>
public sealed record Trial
{
    public long Id { get; init; }
    public int Number { get; init; }
    public int Cycle { get; init; }
    public string Architecture { get; init; } = "";
    public string Parent { get; init; } = "";
    public string Mutation { get; init; } = "";
    public int Width { get; init; }
    public double PredictedLatencyMs { get; init; }
    public bool Feasible { get; init; }
    public long Parameters { get; init; }
    /// <summary><c>pending</c>, <c>running</c>, <c>done</c> or <c>failed</c>.</summary>
    public string Status { get; init; } = "pending";
    public string? Worker { get; init; }
    public long LeaseUntil { get; init; }
    public int Attempts { get; init; }
    public double? ProxyLoss { get; init; }
    public double? MeasuredLatencyMs { get; init; }
    public double? TrainSeconds { get; init; }
    public string? Error { get; init; }
    public long Created { get; init; }
    public long? Started { get; init; }
    public long? Finished { get; init; }
}

/// <summary>
/// Where a study's trials live. SQLite (a file; the embedded default) and PostgreSQL (shared by workers on many
/// machines) run the same SQL. Claiming is one atomic UPDATE of the lowest-numbered pending trial, or of a running
/// trial whose lease has expired (its worker died); results are accepted only from the worker holding the lease,
/// so a trial's result is recorded once even if a slow worker finishes after its trial was reclaimed.
/// </summary>
public sealed class StudyStore : IDisposable
{
    readonly DbConnection connection;
    readonly bool postgres;
    readonly Lock gate = new();

    public string Location { get; }

    StudyStore(DbConnection connection, bool postgres, string location)
    {
        this.connection = connection;
        this.postgres = postgres;
        Location = location;
    }

    /// <summary>
    /// Opens <c>postgresql://user:password@host:port/database</c> (or <c>postgres://</c>), or a SQLite file path
    /// (optionally <c>sqlite:</c>-prefixed); creates the tables if missing.
    /// </summary>
    public static StudyStore Open(string storage)
    {
        StudyStore store;
        if (storage.StartsWith("postgresql://", StringComparison.Ordinal) || storage.StartsWith("postgres://", StringComparison.Ordinal))
        {
            var connection = new NpgsqlConnection(PostgresConnectionString(storage));
            try { connection.Open(); }
            catch (Exception e) when (e is NpgsqlException or System.Net.Sockets.SocketException or TimeoutException)
            {
                connection.Dispose();
                throw new WrenException($"cannot connect to PostgreSQL at {Redacted(storage)}: {e.Message}", e);
            }
            store = new StudyStore(connection, postgres: true, Redacted(storage));
        }
        else
        {
            string path = storage.StartsWith("sqlite:", StringComparison.Ordinal) ? storage["sqlite:".Length..] : storage;
            if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } folder) Directory.CreateDirectory(folder);
            var connection = new SqliteConnection(
                new SqliteConnectionStringBuilder { DataSource = path, DefaultTimeout = 60, Pooling = false }.ToString());
            connection.Open();
            connection.Execute("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=60000; PRAGMA synchronous=NORMAL;");
            store = new StudyStore(connection, postgres: false, path);
        }
        store.CreateTables();
        return store;
    }

    static string Redacted(string uri) => System.Text.RegularExpressions.Regex.Replace(uri, "://([^:@/]+):[^@/]*@", "://$1:***@");

    /// <summary>Npgsql takes key=value strings; users write URIs.</summary>
    static string PostgresConnectionString(string uri)
    {
        Uri parsed;
        try { parsed = new Uri(uri.Replace("postgres://", "postgresql://")); }
        catch (UriFormatException e)
        {
            throw new WrenException($"storage '{Redacted(uri)}' is not a postgresql://user:password@host:port/database URI", e);
        }
        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = parsed.Host,
            Port = parsed.IsDefaultPort || parsed.Port <= 0 ? 5432 : parsed.Port,
            Database = parsed.AbsolutePath.Trim('/') is { Length: > 0 } db ? Uri.UnescapeDataString(db) : "postgres",
            Timeout = 15,
        };
        var user = parsed.UserInfo.Split(':', 2);
        if (user[0].Length > 0) builder.Username = Uri.UnescapeDataString(user[0]);
        if (user.Length > 1) builder.Password = Uri.UnescapeDataString(user[1]);
        return builder.ToString();
    }

    void CreateTables()
    {
        string id = postgres ? "BIGSERIAL PRIMARY KEY" : "INTEGER PRIMARY KEY AUTOINCREMENT";
        string real = postgres ? "DOUBLE PRECISION" : "REAL";
        lock (gate)
            connection.Execute($"""
                CREATE TABLE IF NOT EXISTS studies (
                    name TEXT PRIMARY KEY, space TEXT NOT NULL, data TEXT NOT NULL, state TEXT NOT NULL, created BIGINT NOT NULL);
                CREATE TABLE IF NOT EXISTS trials (
                    id {id}, study TEXT NOT NULL REFERENCES studies(name), number INTEGER NOT NULL, cycle INTEGER NOT NULL,
                    architecture TEXT NOT NULL, parent TEXT NOT NULL, mutation TEXT NOT NULL, width INTEGER NOT NULL,
                    predicted_latency_ms {real} NOT NULL, feasible BOOLEAN NOT NULL, parameters BIGINT NOT NULL,
                    status TEXT NOT NULL, worker TEXT, lease_until BIGINT NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
                    proxy_loss {real}, measured_latency_ms {real}, train_seconds {real}, error TEXT,
                    created BIGINT NOT NULL, started BIGINT, finished BIGINT,
                    UNIQUE (study, number));
                CREATE INDEX IF NOT EXISTS trials_claim ON trials (study, status, number);
                """);
    }

    static long Now => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>Creates the study, or checks that an existing one has the same space and data.</summary>
    public Study CreateStudy(string name, string space, string data)
    {
        lock (gate)
        {
            connection.Execute("""
                INSERT INTO studies (name, space, data, state, created) VALUES (@name, @space, @data, 'running', @now)
                ON CONFLICT (name) DO NOTHING
                """, new { name, space, data, now = Now });
            var study = GetStudyUnlocked(name)!;
            if (study.Space != space)
                throw new WrenException($"study '{name}' already exists in {Location} with another search space; " +
                                        "choose another --study name or the same space file");
            return study;
        }
    }

    public Study? GetStudy(string name) { lock (gate) return GetStudyUnlocked(name); }

    Study? GetStudyUnlocked(string name) =>
        connection.QuerySingleOrDefault<Study>("SELECT name, space, data, state, created FROM studies WHERE name = @name", new { name });

    public IReadOnlyList<string> Studies()
    {
        lock (gate) return connection.Query<string>("SELECT name FROM studies ORDER BY created").ToList();
    }

    public void SetStudyState(string name, string state)
    {
        lock (gate) connection.Execute("UPDATE studies SET state = @state WHERE name = @name", new { name, state });
    }

    /// <summary>Adds trials; a number that exists already is left as it is, so re-proposing after a restart is harmless.</summary>
    public void AddTrials(string study, IEnumerable<NewTrial> trials)
    {
        lock (gate)
        {
            using var transaction = connection.BeginTransaction();
            foreach (var t in trials)
            {
                var row = new
                {
                    study, t.Number, t.Cycle, t.Architecture, t.Parent, t.Mutation, t.Width, t.PredictedLatencyMs, t.Feasible, t.Parameters,
                    now = Now,
                };
                connection.Execute("""
                    INSERT INTO trials (study, number, cycle, architecture, parent, mutation, width, predicted_latency_ms,
                                        feasible, parameters, status, created)
                    VALUES (@study, @Number, @Cycle, @Architecture, @Parent, @Mutation, @Width, @PredictedLatencyMs,
                            @Feasible, @Parameters, 'pending', @now)
                    ON CONFLICT (study, number) DO NOTHING
                    """, row, transaction);
            }
            transaction.Commit();
        }
    }

    const string Columns = """
        id, number, cycle, architecture, parent, mutation, width, predicted_latency_ms AS PredictedLatencyMs, feasible, parameters,
        status, worker, lease_until AS LeaseUntil, attempts, proxy_loss AS ProxyLoss, measured_latency_ms AS MeasuredLatencyMs,
        train_seconds AS TrainSeconds, error, created, started, finished
        """;

    /// <summary>Atomically takes the lowest-numbered pending trial, or a running one whose lease expired; null when none.</summary>
    public Trial? Claim(string study, string worker, TimeSpan lease)
    {
        long now = Now;
        string skipLocked = postgres ? "FOR UPDATE SKIP LOCKED" : "";
        lock (gate)
            return connection.QuerySingleOrDefault<Trial>($"""
                UPDATE trials SET status = 'running', worker = @worker, lease_until = @until, attempts = attempts + 1, started = @now
                WHERE id = (SELECT id FROM trials
                            WHERE study = @study AND (status = 'pending' OR (status = 'running' AND lease_until < @now))
                            ORDER BY number LIMIT 1 {skipLocked})
                  AND (status = 'pending' OR (status = 'running' AND lease_until < @now))
                RETURNING {Columns}
                """, new { study, worker, now, until = now + (long)lease.TotalMilliseconds });
    }

    /// <summary>Returns running trials of workers that <paramref name="isGone"/> says no longer exist to pending, without waiting for their
    /// leases.</summary>
    public int ReleaseAbandoned(string study, Func<string, bool> isGone)
    {
        lock (gate)
        {
            var running = connection.Query<(long Id, string Worker)>(
                "SELECT id, worker FROM trials WHERE study = @study AND status = 'running'", new { study });
            int released = 0;
            foreach (var (id, worker) in running.Where(r => isGone(r.Worker)))
                released += connection.Execute("""
                    UPDATE trials SET status = 'pending', worker = NULL, lease_until = 0
                    WHERE id = @id AND worker = @worker AND status = 'running'
                    """, new { id, worker });
            return released;
        }
    }

    /// <summary>Extends the lease; false when the trial is no longer this worker's (reclaimed after an expiry).</summary>
    public bool Heartbeat(long id, string worker, TimeSpan lease)
    {
        lock (gate)
            return connection.Execute("UPDATE trials SET lease_until = @until WHERE id = @id AND worker = @worker AND status = 'running'",
                                      new { id, worker, until = Now + (long)lease.TotalMilliseconds }) == 1;
    }

    /// <summary>Records a result; false (and nothing written) when the worker no longer holds the trial.</summary>
    public bool Complete(long id, string worker, double proxyLoss, double trainSeconds)
    {
        lock (gate)
            return connection.Execute("""
                UPDATE trials SET status = 'done', proxy_loss = @proxyLoss, train_seconds = @trainSeconds, finished = @now, error = NULL
                WHERE id = @id AND worker = @worker AND status = 'running'
                """, new { id, worker, proxyLoss, trainSeconds, now = Now }) == 1;
    }

    public bool Fail(long id, string worker, string error)
    {
        lock (gate)
            return connection.Execute("""
                UPDATE trials SET status = 'failed', error = @error, finished = @now
                WHERE id = @id AND worker = @worker AND status = 'running'
                """, new { id, worker, error, now = Now }) == 1;
    }

    public void SetMeasuredLatency(long id, double milliseconds)
    {
        lock (gate) connection.Execute("UPDATE trials SET measured_latency_ms = @milliseconds WHERE id = @id", new { id, milliseconds });
    }

    /// <summary>All trials of a study by number.</summary>
    public IReadOnlyList<Trial> Trials(string study)
    {
        lock (gate)
            return connection.Query<Trial>($"SELECT {Columns} FROM trials WHERE study = @study ORDER BY number", new { study }).ToList();
    }

    public void Dispose() => connection.Dispose();
}
