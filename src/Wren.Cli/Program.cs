using Wren.Cli;

return await WrenCli.RunAsync(args);
