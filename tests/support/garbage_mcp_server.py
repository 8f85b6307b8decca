"""A 'server' that answers every MCP message with text that is not JSON-RPC."""

import sys

for _line in sys.stdin:
    sys.stdout.write("this is not json-rpc\n")
    sys.stdout.flush()
