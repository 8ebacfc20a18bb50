"""`cvdoctor run -- COMMAND`: run a command, pass its output through unchanged, and explain it.

- `child`: starting the command (pipes, or a pseudo-terminal when cvdoctor's stdout is one),
  streaming its output byte for byte, stdin, forwarding SIGINT/SIGTERM to its process group.
- `tail`: what is kept of the output for matching (a bounded tail, the first and latest
  tracebacks that scrolled out of it) and the symptoms seen on the way (NaN losses, ultralytics'
  failed AMP check, DataLoader worker deaths, torchrun restarts).
- `diagnose`: from the exit status and the kept output to what is said: the matched recipe with
  the facts read from the message, or the signal that killed the command and where to look.
- `cli`: the click command (`cvdoctor.commands.run` declares it).

Nothing here imports torch; the catalog is loaded only after the command has ended.
"""
