module chartgate.tools/helm-push
go 1.24
require github.com/chartmuseum/helm-push v0.10.4
