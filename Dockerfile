FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# The engine, the matcher and the risk stage compiled by mypyc (as scripts/run.sh does); the C compiler
# is needed only for the build.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && python scripts/build_engine.py build \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
# Settings demand a SECRET_KEY when DEBUG is off; collectstatic never signs anything with this one.
RUN DEBUG=false SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0

EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec uvicorn exchange.asgi:application --host 0.0.0.0 --port 8000 --lifespan on"]
