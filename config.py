"""KernKoa settings.

Every name below is a setting. Each can be overridden without editing this file
by an environment variable ``KERNKOA_<NAME>`` (the name matched without regard to
case, so ``KERNKOA_URL`` sets ``url``). The value is parsed by the type of the
default: ``true``/``false`` for switches, integers, comma-separated lists, JSON
for dicts. Folder settings are relative to the project root (``path``).

Lower-case names are the ones KernKoa controllers already use; upper-case names
are new to this kernel. Keep secrets out of this file: use the environment.
"""

# --- Settings KernKoa controllers know -------------------------------------

#: Absolute base URL of the site, ending in "/" (``config.url`` in controllers).
#: Empty: taken from each request (scheme, host and script root).
url = ""

#: URL prefix under which controller and static URLs are served ("" or "/api").
base = ""

#: Project root. Empty: the folder holding this file.
path = ""

#: Secret for signed session cookies. Empty: one is generated into VAR and kept.
secretKey = ""

#: Lifetime of a session cookie, in minutes.
session_timeout = 60

#: Databases for ``dbs[name]`` (see docs/mvc.md, "Databases"). Each entry is either
#: KernKoa's shape, ``{"driver": "sqlite" | "postgresql" | "mysql", "host", "port",
#: "user", "password", "database"}`` (for SQLite, ``host`` is the file, relative to
#: VAR), or ``{"url": "<any SQLAlchemy URL>"}``; ``"options"`` adds engine options.
databases = {
    "maindb": {"driver": "sqlite", "host": "maindb.sqlite3", "user": "", "password": "",
               "database": ""},
}

#: Name of the database models use when they name none.
defaultDatabase = "maindb"

# --- Kernel settings -----------------------------------------------------------

#: Debug mode: tracebacks and resolution details in error bodies. Never in production.
DEBUG = False

#: Catalog root: holds controller/, model/ and print/.
CATALOG = "catalog"

#: Jinja2 templates for ``render``.
TEMPLATES = "templates"

#: Runtime data: generated secret, embedded broker, SQLite files. Kept out of git.
VAR = "var"

#: Folders served read-only at /images/<file> and /pdfs/<file>.
IMAGES = "images"
PDFS = "pdfs"

#: Run a controller file's new code on the next request after it changes.
RELOAD = True

#: What "/" calls: module path, class and method under catalog/controller/.
INDEX_ROUTE = "index/index/index"

#: First path segment of the kernel's own pages (/_kernkoa/...).
RESERVED_PREFIX = "_kernkoa"

#: Serve the kernel's pages: /_kernkoa/endpoints, /info, /openapi.json and /docs.
#: They show every route with its docstring and parameters, the library versions
#: and the catalog folder, which is what a developer wants and a stranger should
#: not see: on a public server set False (they answer 404), or put them behind a
#: login with PAGES_AUTH.
PAGES = True

#: Put the kernel pages behind the enabled auth add-on (jwt_auth, basic_auth)
#: even when AUTH_DEFAULT is "open". /_kernkoa/health stays public.
PAGES_AUTH = False

#: Serve /_kernkoa/health for load balancers: 200 when this process, the broker
#: and the result store answer, 503 naming the failed ones; its body counts the
#: live workers of each queue. /_kernkoa/health/tasks: 200 when every queue the
#: catalog uses has a live worker, 503 "degraded" naming those without, with the
#: tasks waiting and the oldest one's age. Never behind a login.
HEALTH = True

#: Seconds /_kernkoa/health waits for the broker and result-store checks at most.
HEALTH_TIMEOUT = 3.0

#: Count requests, tasks and controller reloads and serve them at
#: /_kernkoa/metrics in Prometheus' text format, summed over every uWSGI
#: process (files under VAR/metrics/web). Off: no endpoint (404) and no cost
#: per request. Who may read it follows the pages' rule (PAGES_AUTH). Workers
#: serve theirs with `kernkoa worker --metrics-port N` (docs/operations.md).
METRICS = False

#: Each process counts its requests in memory and writes them to the metric
#: files at most this many seconds later (and when it exits), so a scrape may
#: miss the last half second of another process. 0: every request writes at
#: once (exact at every scrape, at the old cost: bench/RESULTS.md, part 8).
METRICS_FLUSH_SECONDS = 0.5

#: Longest accepted URL path, in characters.
MAX_PATH_LENGTH = 1024

#: Most path segments in a URL.
MAX_PATH_DEPTH = 32

#: Longest path segment, in characters.
MAX_SEGMENT_LENGTH = 128

#: Largest request body, in bytes (larger ones get 413, chunked ones too).
MAX_CONTENT_LENGTH = 16 * 1024 * 1024

#: Most fields in a request's query string, form (urlencoded or multipart) or
#: top-level JSON object (or CBOR map); more is a 413 envelope.
MAX_FIELDS = 1000

#: Largest text of a form held in memory: a whole urlencoded body, or one
#: non-file field of a multipart body (Flask's MAX_FORM_MEMORY_SIZE); larger
#: is a 413 envelope. Files in a multipart body go by MAX_CONTENT_LENGTH only.
#: Percent-decoding costs Python work per escape: this bounds what one form costs.
MAX_FORM_MEMORY_SIZE = 500_000

#: Most arrays and objects in a JSON body (arrays and maps in a CBOR one); more is
#: a 413 envelope. Each becomes a
#: Python object: 100,000 empty arrays take about 35 ms and 6 MiB to parse, where
#: a plain body of their size takes under 1 ms.
MAX_JSON_CONTAINERS = 100_000

#: Deepest nesting of arrays and objects in a JSON body (arrays and maps in a CBOR
#: one); deeper is a 400 envelope.
MAX_JSON_DEPTH = 64

#: How many resolved URLs each process remembers.
ROUTE_CACHE_SIZE = 4096

#: Add-ons to enable, by module name in ADDONS_FOLDER, hooks run in this order
#: (see docs/mvc.md, "Add-ons"). Example: ``KERNKOA_ADDONS=access_log``.
ADDONS = []

#: Folder of the add-on modules, relative to the project root.
ADDONS_FOLDER = "system/addons"

#: How the web process and the workers write their log lines (to stderr: the uWSGI
#: log, the worker's log): "text" for people, or "json", one JSON object per line
#: (time, level, logger, message, request_id, task_id, and the access_log add-on's
#: fields) for a log shipper. Every line written while a request or a task runs
#: carries its request id (docs/operations.md, "Logs"). A deployment that
#: configures Python logging itself keeps its own handlers.
LOG_FORMAT = "text"

# --- Access (see SECURITY.md) ------------------------------------------------------

#: "open": every route is open unless decorated with @requires; "required": every
#: route (controllers, /status/<id>, /_kernkoa/ pages, static files) needs the
#: enabled auth add-on unless its controller method or class is @public.
AUTH_DEFAULT = "open"

#: Realm named in the WWW-Authenticate challenges.
AUTH_REALM = "kernkoa"

#: jwt_auth: file holding the shared HS256 key (relative to the project root).
HMACKEY_FILE = "hmackey"

#: jwt_auth: the shared HS256 key itself, when set (``KERNKOA_HMACKEY``); wins
#: over HMACKEY_FILE. Keep it in the environment, never in this file.
HMACKEY = ""

#: jwt_auth: the audience tokens must name in their "aud" claim ("" = not checked).
JWT_AUDIENCE = ""

#: jwt_auth: seconds of clock skew tolerated on "exp" and "nbf".
JWT_LEEWAY = 0

#: basic_auth: the users file written by ``kernkoa user add`` ("" = VAR/users.json).
USERS_FILE = ""

#: Proxies whose X-Forwarded-For is believed, as addresses or networks, e.g.
#: ``KERNKOA_TRUSTED_PROXIES=10.0.0.5,10.1.0.0/16``. A request from one of them
#: takes its client address (what basic_auth counts failed logins by, 5 in
#: 60 s then 429) from the entry that proxy added (Werkzeug's ProxyFix). Empty:
#: the socket's address, the header ignored. Not needed behind the shipped
#: nginx, which hands uWSGI the client's address itself.
TRUSTED_PROXIES = []

#: cors: origins allowed to call the API from a browser, e.g.
#: ``KERNKOA_CORS_ORIGINS=https://app.example.org`` ("*": any, never with credentials).
CORS_ORIGINS = []

#: cors: methods and request headers a preflight may ask for.
CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
CORS_HEADERS = ["Authorization", "Content-Type"]

#: cors: whether browsers may send cookies and credentials cross-origin.
CORS_ALLOW_CREDENTIALS = False

#: cors: seconds a browser may cache a preflight answer.
CORS_MAX_AGE = 600

#: Host names the site answers to (Flask's TRUSTED_HOSTS), e.g.
#: ``KERNKOA_TRUSTED_HOSTS=shop.example.org,localhost``: a request whose Host
#: header names another gets a 400 envelope before any URL is built from it
#: (``config.url``, a task's status URL and ``Location``, redirects). The port
#: is not compared; ".example.org" accepts its subdomains too. Empty: any host.
#: ``setup.sh --server-name NAME`` sets it.
TRUSTED_HOSTS = []

#: Address and port of ``kernkoa serve``.
HOST = "127.0.0.1"
PORT = 5000

# --- Long work (Celery) ----------------------------------------------------------

#: Task broker URL, e.g. "redis://127.0.0.1:6379/0" (RabbitMQ: "amqp://...").
#: Empty: the embedded broker, files under VAR/celery/ (development only).
BROKER_URL = ""

#: Where task states and results are kept. Empty: BROKER_URL when it is Redis,
#: else files under VAR/celery/results/.
RESULT_BACKEND = ""

#: Request headers copied into a task's message, so that the worker's rebuilt
#: request sees them; every other header stays out of the broker (credentials
#: such as Authorization, Cookie, X-Api-Key never travel). Matched without
#: regard to case; add the headers of your own that tasks need.
TASK_HEADERS = ["Accept", "Accept-Language", "User-Agent", "Referer", "Origin",
                "X-Requested-With", "X-Request-Id"]

#: Seconds a task may run before it is stopped with a FAILURE (0: no limit).
TASK_SOFT_TIME_LIMIT = 3600

#: Seconds after which a task's worker process is killed (0: no limit).
TASK_TIME_LIMIT = 3660

#: Seconds before Redis hands an unacknowledged task to another worker whatever
#: its lease (a dead worker's tasks come back sooner, see WORKER_LEASE). Kept
#: above TASK_TIME_LIMIT, so a running task never starts twice. 0: twice
#: TASK_TIME_LIMIT (a week without a limit).
VISIBILITY_TIMEOUT = 0

#: Seconds between two heartbeats of a worker: it renews the leases of the
#: tasks it holds, its record (read by /_kernkoa/health), and requeues the
#: tasks of workers that are gone.
WORKER_HEARTBEAT = 10.0

#: Seconds a heartbeat holds a worker's tasks (at least two heartbeats): a task
#: whose worker died or froze is requeued within WORKER_LEASE + WORKER_HEARTBEAT
#: (40 s by default), and may then run twice (delivery is at least once).
WORKER_LEASE = 30.0

#: Seconds task states, results and KernKoa's task records are kept (Redis).
RESULT_EXPIRES = 86400

#: How many of the latest tasks /_kernkoa/tasks lists: a bounded index the workers
#: write when they take a task and when it ends, expiring with the results (0 keeps none).
RECENT_TASKS = 200

#: Seconds between two stored progress reports of the same state; the reports
#: in between are dropped, so a tight loop does not flood the result store.
PROGRESS_INTERVAL = 0.5

#: Seconds the web process waits to connect to the broker or result store
#: before it answers 503.
BROKER_TIMEOUT = 1.0

#: Seconds the web process answers 503 at once after a broker failure, instead
#: of trying again (a circuit breaker).
BROKER_COOLDOWN = 2.0

#: Longest wait of a long poll, GET /status/<id>?wait=<seconds>: longer waits
#: are cut to this (0: never wait). A waiting request holds a server worker, so
#: keep it below uWSGI's harakiri (60 s in kernkoa_uwsgi.ini).
STATUS_WAIT_MAX = 30.0

#: Seconds between two looks at the embedded broker's queue folder.
BROKER_POLLING_INTERVAL = 0.05

#: Task processes of a worker started by ``kernkoa serve`` / ``kernkoa worker``
#: (0: Celery's default, one per CPU).
WORKER_CONCURRENCY = 0

#: Time zone of ``@cron`` schedules (an IANA name: "Europe/Paris").
SCHEDULE_TIMEZONE = "UTC"

#: Seconds ``kernkoa beat`` holds the deployment's beat lock on Redis without
#: renewing it (it renews every second); another beat takes over after that.
BEAT_LEASE = 10.0
#: Port where `kernkoa worker` serves the metrics of its tasks and of every
#: process of its pool, for Prometheus (0: none). `--metrics-port` wins.
WORKER_METRICS_PORT = 0

#: Address of that port: loopback unless a scraper on another host must reach
#: it (the metrics are not behind a login). `--metrics-host` wins.
WORKER_METRICS_HOST = "127.0.0.1"
