<?php
// GENERATED CODE -- DO NOT EDIT!

namespace Dragoman\V1;

/**
 * Accounts and tokens. Every other public call needs the access token from
 * here in the `authorization: Bearer <token>` metadata.
 */
class AuthServiceClient extends \Grpc\BaseStub {

    /**
     * @param string $hostname hostname
     * @param array $opts channel options
     * @param \Grpc\Channel $channel (optional) re-use channel object
     */
    public function __construct($hostname, $opts, $channel = null) {
        parent::__construct($hostname, $opts, $channel);
    }

    /**
     * Creates an account. A taken username or email gives ALREADY_EXISTS.
     * @param \Dragoman\V1\RegisterRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function Register(\Dragoman\V1\RegisterRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/Register',
        $argument,
        ['\Dragoman\V1\RegisterResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Exchanges a username and password for tokens. Wrong credentials give
     * UNAUTHENTICATED.
     * @param \Dragoman\V1\LoginRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function Login(\Dragoman\V1\LoginRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/Login',
        $argument,
        ['\Dragoman\V1\LoginResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Exchanges a refresh token for a new pair; the old refresh token stops
     * working.
     * @param \Dragoman\V1\RefreshTokenRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function RefreshToken(\Dragoman\V1\RefreshTokenRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/RefreshToken',
        $argument,
        ['\Dragoman\V1\RefreshTokenResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Revokes a refresh token.
     * @param \Dragoman\V1\LogoutRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function Logout(\Dragoman\V1\LogoutRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/Logout',
        $argument,
        ['\Dragoman\V1\LogoutResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Deletes the caller's account and all their data: logins, their part in
     * sessions, what they said, their vocabularies, the recordings of their
     * sessions. Needs the access token and the password; a
     * wrong password gives UNAUTHENTICATED. Sessions left without
     * participants go too; the partner keeps their own part. An account a
     * sign-in provider created has no password: its login must be at most 10
     * minutes old instead (sign in with the provider again), else
     * UNAUTHENTICATED.
     * @param \Dragoman\V1\DeleteAccountRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function DeleteAccount(\Dragoman\V1\DeleteAccountRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/DeleteAccount',
        $argument,
        ['\Dragoman\V1\DeleteAccountResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Returns everything stored about the caller: account, logins, sessions,
     * the utterances of those sessions (decrypted), their vocabularies and the
     * recordings of their sessions (texts; DownloadRecording gives the audio).
     * Needs the access token.
     * @param \Dragoman\V1\ExportMyDataRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function ExportMyData(\Dragoman\V1\ExportMyDataRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/ExportMyData',
        $argument,
        ['\Dragoman\V1\ExportMyDataResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Lists the caller's devices: their logins that stand (neither logged out
     * nor revoked), most recently used first. Needs the access token.
     * @param \Dragoman\V1\ListDevicesRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function ListDevices(\Dragoman\V1\ListDevicesRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/ListDevices',
        $argument,
        ['\Dragoman\V1\ListDevicesResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Signs a device out at once: its refresh token stops working and so do
     * the access tokens it was issued, on every gateway. A device that is not
     * the caller's, or no longer stands, gives NOT_FOUND. Needs the access
     * token.
     * @param \Dragoman\V1\RevokeDeviceRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function RevokeDevice(\Dragoman\V1\RevokeDeviceRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/RevokeDevice',
        $argument,
        ['\Dragoman\V1\RevokeDeviceResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Lists the OpenID Connect providers users may sign in with (Google,
     * Keycloak ...), as the gateway is configured. Needs no access token.
     * @param \Dragoman\V1\ListSignInProvidersRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function ListSignInProviders(\Dragoman\V1\ListSignInProvidersRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/ListSignInProviders',
        $argument,
        ['\Dragoman\V1\ListSignInProvidersResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Begins signing in with a provider (authorization code flow with PKCE):
     * returns the URL to send the user to and the state that comes back with
     * the code on `redirect_uri`. The state is good once, for a few minutes.
     * An unknown provider gives NOT_FOUND; a provider that cannot be reached
     * UNAVAILABLE. Needs no access token.
     * @param \Dragoman\V1\StartSignInRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function StartSignIn(\Dragoman\V1\StartSignInRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/StartSignIn',
        $argument,
        ['\Dragoman\V1\StartSignInResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Finishes signing in with the state and code the provider sent back:
     * checks the provider's ID token (signature, issuer, audience, expiry,
     * nonce) and returns tokens, like Login. The first sign-in creates an
     * account, unless the provider's verified email is that of an existing
     * account: then FAILED_PRECONDITION asks for that account's password,
     * and calling again with the same state and `password` links the two.
     * An unknown, expired or used state gives FAILED_PRECONDITION; an ID
     * token that fails a check, a code the provider refuses or a wrong
     * password UNAUTHENTICATED. Needs no access token.
     * @param \Dragoman\V1\FinishSignInRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function FinishSignIn(\Dragoman\V1\FinishSignInRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.AuthService/FinishSignIn',
        $argument,
        ['\Dragoman\V1\FinishSignInResponse', 'decode'],
        $metadata, $options);
    }

}
