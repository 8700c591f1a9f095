"""``python -m modelhost.server``: the model server configured by environment variables alone.

How the platform's runtime starts an instance: no CLI parsing, nothing imported that serving
does not need.
"""

import sys

from modelhost.server import serve
from modelhost.settings import ServerSettings

sys.exit(serve(ServerSettings()))
