//go:build tools
package tools
import _ "github.com/chartmuseum/helm-push/cmd/helm-cm-push"
