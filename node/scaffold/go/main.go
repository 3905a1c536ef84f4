// Obtains an access token for this agent with OAuth 2.0 client_credentials (RFC 6749 §4.4) at
// the token endpoint that the node's metadata (RFC 8414) names, then calls the node's
// /agent-info with it and prints the agent's identity.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func required(name string) string {
	value := os.Getenv(name)
	if value == "" {
		fmt.Fprintf(os.Stderr, "%s is not set (see .env.example)\n", name)
		os.Exit(2)
	}
	return value
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// metadata is the part of the node's RFC 8414 document this program uses.
type metadata struct {
	Issuer        string `json:"issuer"`
	TokenEndpoint string `json:"token_endpoint"`
}

func main() {
	nodeURL := strings.TrimRight(required("AGENTIDP_URL"), "/")
	clientID := required("AGENTIDP_CLIENT_ID")
	clientSecret := required("AGENTIDP_CLIENT_SECRET")
	// Plain http only when asked for (a node on your own machine): never in production.
	allowHTTP := os.Getenv("AGENTIDP_ALLOW_HTTP") == "1"
	if !allowHTTP && !strings.HasPrefix(nodeURL, "https://") {
		fail("AGENTIDP_URL is not https (set AGENTIDP_ALLOW_HTTP=1 for a node on your own machine)")
	}

	base := &http.Client{
		Timeout: 10 * time.Second,
		// No redirects: an answer from elsewhere is not the node's.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)

	// RFC 8414 discovery: the metadata names the token endpoint; its issuer must be the node's.
	resp, err := base.Get(nodeURL + "/.well-known/oauth-authorization-server")
	if err != nil {
		fail("discovery: %v", err)
	}
	var meta metadata
	err = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		fail("discovery answered %d: %v", resp.StatusCode, err)
	}
	if strings.TrimRight(meta.Issuer, "/") != nodeURL || meta.TokenEndpoint == "" {
		fail("the metadata's issuer %q is not %q", meta.Issuer, nodeURL)
	}

	config := clientcredentials.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		TokenURL:     meta.TokenEndpoint,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	if scope := os.Getenv("AGENTIDP_SCOPE"); scope != "" {
		config.Scopes = strings.Fields(scope)
	}
	token, err := config.Token(ctx)
	if err != nil {
		fail("token: %v", err)
	}
	fmt.Printf("token: %s token for %s, expires %s\n", token.Type(), clientID, token.Expiry.Format(time.RFC3339))

	// An http.Client that sends the token (and gets a new one when it expires).
	client := config.Client(ctx)
	resp, err = client.Get(nodeURL + "/agent-info")
	if err != nil {
		fail("/agent-info: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		fail("/agent-info answered %d: %s", resp.StatusCode, body)
	}
	var info struct {
		Sub            string `json:"sub"`
		Name           string `json:"name"`
		DID            string `json:"did"`
		OrganizationID string `json:"organization_id"`
		Scope          string `json:"scope"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		fail("/agent-info: %v", err)
	}
	fmt.Printf("agent: %s\nname: %q\ndid: %s\norganization: %s\nscope: %s\n",
		info.Sub, info.Name, info.DID, info.OrganizationID, info.Scope)
}
