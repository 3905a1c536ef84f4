package com.example.agent;

import java.net.URI;

import com.nimbusds.oauth2.sdk.AccessTokenResponse;
import com.nimbusds.oauth2.sdk.ClientCredentialsGrant;
import com.nimbusds.oauth2.sdk.Scope;
import com.nimbusds.oauth2.sdk.TokenRequest;
import com.nimbusds.oauth2.sdk.TokenResponse;
import com.nimbusds.oauth2.sdk.as.AuthorizationServerMetadata;
import com.nimbusds.oauth2.sdk.auth.ClientSecretBasic;
import com.nimbusds.oauth2.sdk.auth.Secret;
import com.nimbusds.oauth2.sdk.http.HTTPRequest;
import com.nimbusds.oauth2.sdk.http.HTTPResponse;
import com.nimbusds.oauth2.sdk.id.ClientID;
import com.nimbusds.oauth2.sdk.id.Issuer;
import com.nimbusds.oauth2.sdk.token.AccessToken;

/**
 * Obtains an access token for this agent with OAuth 2.0 client_credentials (RFC 6749 §4.4) at
 * the token endpoint that the node's metadata (RFC 8414) names, then calls the node's
 * /agent-info with it and prints the agent's identity.
 */
public final class Main {

    private static String required(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            System.err.println(name + " is not set (see .env.example)");
            System.exit(2);
        }
        return value;
    }

    public static void main(String[] args) throws Exception {
        String nodeUrl = required("AGENTIDP_URL").replaceAll("/+$", "");
        String clientId = required("AGENTIDP_CLIENT_ID");
        String clientSecret = required("AGENTIDP_CLIENT_SECRET");
        String scope = System.getenv("AGENTIDP_SCOPE");
        // Plain http only when asked for (a node on your own machine): never in production.
        boolean allowHttp = "1".equals(System.getenv("AGENTIDP_ALLOW_HTTP"));
        if (!allowHttp && !nodeUrl.startsWith("https://")) {
            System.err.println("AGENTIDP_URL is not https (set AGENTIDP_ALLOW_HTTP=1 for a node on your own machine)");
            System.exit(1);
        }

        // RFC 8414 discovery; Nimbus checks that the metadata's issuer is the node's.
        AuthorizationServerMetadata metadata = AuthorizationServerMetadata.resolve(new Issuer(nodeUrl));

        TokenRequest request = new TokenRequest(
                metadata.getTokenEndpointURI(),
                new ClientSecretBasic(new ClientID(clientId), new Secret(clientSecret)),
                new ClientCredentialsGrant(),
                scope == null || scope.isBlank() ? null : Scope.parse(scope));
        TokenResponse response = TokenResponse.parse(request.toHTTPRequest().send());
        if (!response.indicatesSuccess()) {
            System.err.println("token: " + response.toErrorResponse().getErrorObject());
            System.exit(1);
        }
        AccessTokenResponse success = response.toSuccessResponse();
        AccessToken token = success.getTokens().getAccessToken();
        System.out.println("token: " + token.getType() + " token for " + clientId
                + ", expires in " + token.getLifetime() + " s");

        HTTPRequest get = new HTTPRequest(HTTPRequest.Method.GET, URI.create(nodeUrl + "/agent-info"));
        get.setAuthorization(token.toAuthorizationHeader());
        HTTPResponse info = get.send();
        if (info.getStatusCode() != 200) {
            System.err.println("/agent-info answered " + info.getStatusCode() + ": " + info.getBody());
            System.exit(1);
        }
        var claims = info.getBodyAsJSONObject();
        System.out.println("agent: " + claims.get("sub"));
        System.out.println("name: \"" + claims.get("name") + "\"");
        System.out.println("did: " + claims.get("did"));
        System.out.println("organization: " + claims.get("organization_id"));
        System.out.println("scope: " + claims.get("scope"));
    }
}
