"""MacTCP constants: asr event codes, termination reasons and error codes.

The values are those of Apple's MacTCP driver as the original MacPython ``MACTCPconst`` module
listed them, so that code comparing event codes or ``error.args[0]`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "PassiveOpenDone",
    "TCPClosing",
    "TCPDataArrival",
    "TCPICMPReceived",
    "TCPNetworkFailure",
    "TCPRemoteAbort",
    "TCPSecPrecMismatch",
    "TCPServiceError",
    "TCPTerminate",
    "TCPULPAbort",
    "TCPULPClose",
    "TCPULPTimeout",
    "TCPULPTimeoutTerminate",
    "TCPUrgent",
    "UDPDataArrival",
    "UDPICMPReceived",
    "commandTimeout",
    "connectionClosing",
    "connectionDoesntExist",
    "connectionExists",
    "connectionTerminated",
    "duplicateSocket",
    "icmpEchoTimeoutErr",
    "insufficientResources",
    "invalidBufPtr",
    "invalidLength",
    "invalidRDS",
    "invalidStreamPtr",
    "invalidWDS",
    "ipBadAddr",
    "ipBadCnfgErr",
    "ipBadLapErr",
    "ipDestDeadErr",
    "ipDontFragErr",
    "ipLoadErr",
    "ipNoCnfgErr",
    "ipNoFragMemErr",
    "ipRouteErr",
    "openFailed",
    "streamAlreadyOpen",
]

# TCP asr event codes
TCPClosing = 1
TCPULPTimeout = 2
TCPTerminate = 3
TCPDataArrival = 4
TCPUrgent = 5
TCPICMPReceived = 6
PassiveOpenDone = 32766

# Termination reasons (the detail of a TCPTerminate event)
TCPRemoteAbort = 2
TCPNetworkFailure = 3
TCPSecPrecMismatch = 4
TCPULPTimeoutTerminate = 5
TCPULPAbort = 6
TCPULPClose = 7
TCPServiceError = 8

# UDP asr event codes
UDPDataArrival = 1
UDPICMPReceived = 2

# MacTCP errors
ipBadLapErr = -23000
ipBadCnfgErr = -23001
ipNoCnfgErr = -23002
ipLoadErr = -23003
ipBadAddr = -23004
connectionClosing = -23005
invalidLength = -23006
connectionExists = -23007
connectionDoesntExist = -23008
insufficientResources = -23009
invalidStreamPtr = -23010
streamAlreadyOpen = -23011
connectionTerminated = -23012
invalidBufPtr = -23013
invalidRDS = -23014
invalidWDS = -23014
openFailed = -23015
commandTimeout = -23016
duplicateSocket = -23017

# IP errors
ipDontFragErr = -23032
ipDestDeadErr = -23033
icmpEchoTimeoutErr = -23035
ipNoFragMemErr = -23036
ipRouteErr = -23037
