namespace Wren;

/// <summary>
/// An error caused by the user's input (a config, a checkpoint, an argument): the message says what is
/// wrong and how to fix it. The CLI prints it without a stack trace and exits with code 2.
/// </summary>
public class WrenException(string message, Exception? inner = null) : Exception(message, inner);
