"""Every command in a ``console`` block of README.md and docs/*.md is exercised, in a short form.

The docs show the real command (``--seeds 2000``, ``-n 20000``, ``make run``);
these tests run each one with its long options cut down by a per-program rule
in ``RULES`` (``--seeds 2``, ``-n 20``, ``--duration 1``, ``--quick``...), so
a renamed option, a changed default that breaks a command or a deleted script
fails CI.  The convention, for doc authors (also in tests/test_docs.py and
docs/index.md):

- a ```` ```console ```` block holds commands that are too long, too slow or
  too remote to run verbatim.  Each line is one command (``\\`` continues a
  line, ``#`` starts a comment, a trailing ``&`` runs it in the background
  for the rest of the block); when some lines start with ``$ ``, only those
  are commands and the other lines are their output.  ``$SECRET`` is the
  only variable a command may use;
- every such command's program must have a rule in ``RULES`` (a new program
  fails ``test_every_console_command_has_a_rule``); the rule says how the
  short form is made and whether it is run to completion (``run``), started,
  probed on ``/healthz`` and stopped (``serve``: ``crdtkv serve``,
  ``make run``), or only parsed (``parse``, with the reason: it needs tools
  the project does not install, or is the whole test suite);
- every command, verbatim, is also parsed by the real argparse parser of its
  program (``test_documented_options_parse``: an unknown option, a bad choice
  or a deleted script fails), and so are the inline ``python -m simulations
  run|cluster ...`` commands of the prose (reproduce commands, campaigns);
- a command with the same program and the same option names as an earlier
  one is only parsed, not run again (the run would test nothing new);
- ports (``127.0.0.1:7301``, ``--port 7001``, peers at other hosts) become
  free local ports, absolute paths (``/tmp/x.json``, ``/var/lib/...``) move
  under a temporary directory, which is also the working directory, so
  relative outputs (``r1.json``, ``out/``) land there too;
- ``text`` blocks are output or listings, never run; ``sh`` and ``python``
  blocks run verbatim against a local cluster (tests/test_docs.py).  An
  untagged block fails ``test_every_fence_is_tagged``.

``commands`` reads the docs and holds the rules; ``test_static`` checks the
fences, the rules and the named scripts, ``test_parse`` parses every command
verbatim and ``test_run`` runs the short forms.
"""
