"""gunicorn settings shared by the deployment and the HTTP benchmark.

``gunicorn -c python:portal.gunicorn portal.wsgi:application --workers=N``:
docker-compose.yml runs it so, and ``bench/registry_vs_mlflow.py`` runs the
same module, so the figures it prints describe the server as deployed. The
number of workers and the address stay on the command line (they differ by
host); what a worker is stays here.
"""

# Threads: the Hugging Face client fetches 8 files at once, and a large download must
# not hold (or be killed with) a whole worker process.
worker_class = "gthread"
threads = 8
# Seconds a worker may go silent (a long download streams; a request does not take this).
timeout = 120
# Kept-alive connections (the proxy's and API clients') wait this long for their next request.
keepalive = 5
