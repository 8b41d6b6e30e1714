# Serves a real graphite-web over whisper files, for graphitetest.Real.
#
# Usage: python3 serve.py ROOT. ROOT/series.json holds
# {"step": seconds, "series": [{"name": "a.b.c", "values": [1.5, null]}]}:
# each series becomes a whisper file whose last value sits at the latest
# step boundary and the others step seconds apart before it (nulls are
# left unwritten, as Graphite stores a gap). graphite-web then serves
# ROOT/whisper on 127.0.0.1 at a free port, and the line
# "listening PORT" on stdout says which, once requests are accepted.
import json
import os
import sys
import time

root = sys.argv[1]
with open(os.path.join(root, "series.json")) as f:
    spec = json.load(f)

import whisper  # noqa: E402  (python3-whisper)

whisper_dir = os.path.join(root, "whisper")
step = int(spec["step"])
now = int(time.time())
end = now - now % step
for s in spec["series"]:
    path = os.path.join(whisper_dir, *s["name"].split(".")) + ".wsp"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    whisper.create(path, [(step, 8640)], xFilesFactor=0, aggregationMethod="average")
    n = len(s["values"])
    points = [(end - (n - 1 - i) * step, v) for i, v in enumerate(s["values"]) if v is not None]
    if points:
        whisper.update_many(path, points, now=now)

# graphite.settings imports the module named by GRAPHITE_SETTINGS_MODULE in
# place of Debian's /etc/graphite/local_settings.py.
os.makedirs(os.path.join(root, "log"), exist_ok=True)
with open(os.path.join(root, "graphitetest_settings.py"), "w") as f:
    f.write(
        "SECRET_KEY = 'graphitetest'\n"
        f"GRAPHITE_ROOT = {root!r}\n"
        f"CONF_DIR = {root!r}\n"
        f"STORAGE_DIR = {root!r}\n"
        f"WHISPER_DIR = {whisper_dir!r}\n"
        f"LOG_DIR = {os.path.join(root, 'log')!r}\n"
        f"INDEX_FILE = {os.path.join(root, 'index')!r}\n"
        "STATIC_ROOT = '/usr/share/graphite-web/static'\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', "
        f"'NAME': {os.path.join(root, 'graphite.db')!r}}}}}\n"
        "DEFAULT_XFILES_FACTOR = 0\n"
        "FUNCTION_PLUGINS = []\n"
    )
sys.path.insert(0, root)
os.environ["GRAPHITE_SETTINGS_MODULE"] = "graphitetest_settings"
os.environ["DJANGO_SETTINGS_MODULE"] = "graphite.settings"

from wsgiref.simple_server import WSGIRequestHandler, make_server  # noqa: E402

from django.core.wsgi import get_wsgi_application  # noqa: E402

app = get_wsgi_application()


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
print(f"listening {server.server_port}", flush=True)
server.serve_forever()
