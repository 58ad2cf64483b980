using System.CommandLine;
using Wren.Distributed;

namespace Wren.Cli.Commands;

/// <summary>
/// Runs a command in the MPI job mpirun started it in (a plain run stays one process and never loads MPI). Errors follow
/// one rule: an error every rank raised together (<see cref="CollectiveException"/>) is printed once, by rank 0, and every rank
/// ends MPI and exits with 2; an error of one rank is printed with its rank and ends the whole job through MPI_Abort with
/// the exit code the single-process CLI would give (2 bad input, 130 cancelled, 1 anything else).
/// </summary>
internal sealed class MpiLaunch
{
    readonly Option<double> timeout = new("--mpi-timeout")
    {
        Description = "under mpirun: seconds one collective may wait for the other ranks before this rank gives up",
        DefaultValueFactory = _ => 600,
    };

    public MpiLaunch(Command command)
    {
        CommonOptions.MustBePositive(timeout);
        command.Add(timeout);
    }

    public int Run(ParseResult result, Func<ProcessGroup, int> body)
    {
        var group = ProcessGroup.FromEnvironment(TimeSpan.FromSeconds(result.GetValue(timeout)));
        if (group == ProcessGroup.Single) return body(group);
        if (group.Size == 1)
        {
            using (group) return body(group);
        }
        try
        {
            int code = body(group);
            group.Dispose();
            return code;
        }
        catch (CollectiveException)
        {
            group.Dispose();
            if (group.IsRoot) throw;
            return 2;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: rank {group.Rank} of {group.Size}: {e.Message}");
            Console.Error.Flush();
            group.Abort(e switch
            {
                WrenException or IOException or UnauthorizedAccessException => 2,
                OperationCanceledException => 130,
                _ => 1,
            });
            throw;   // not reached: Abort ends the process
        }
    }
}
