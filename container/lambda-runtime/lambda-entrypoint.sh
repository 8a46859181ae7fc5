#!/bin/sh
# The real image's ENTRYPOINT: `IMAGE module.handler`. Under the Lambda service (AWS_LAMBDA_RUNTIME_API
# set) it runs the runtime; elsewhere the runtime under the Lambda RIE, which this stand-in does not ship:
# SAM CLI adds its own at /var/rapid (and runs it itself); mount one there to run the image alone.
if [ $# -ne 1 ]; then
    echo "entrypoint requires the handler name to be the first argument" >&2
    exit 142
fi
export _HANDLER="$1"
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
    exec /var/runtime/bootstrap
fi
for rie in /usr/local/bin/aws-lambda-rie /var/rapid/aws-lambda-rie; do
    if [ -x "$rie" ]; then
        exec "$rie" /var/runtime/bootstrap
    fi
done
echo "no Lambda RIE in this image: mount one at /var/rapid/aws-lambda-rie (SAM CLI ships it)" >&2
exit 127
