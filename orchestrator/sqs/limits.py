"""SQS's limits, named once. Every module that needs one imports it from here.

From the Amazon SQS Developer Guide ("Amazon SQS quotas") and the API reference.
"""

from __future__ import annotations

#: The longest a message can be hidden: VisibilityTimeout (ReceiveMessage,
#: ChangeMessageVisibility) is at most 12 hours.
MAX_VISIBILITY_TIMEOUT_S = 43_200
#: The longest long poll (ReceiveMessage's WaitTimeSeconds).
MAX_WAIT_TIME_S = 20
#: Entries of one batch call (SendMessageBatch, DeleteMessageBatch,
#: ChangeMessageVisibilityBatch) and messages of one ReceiveMessage.
MAX_BATCH_ENTRIES = 10
#: A queue's MaximumMessageSize when it was not set (and the size a batch's bodies stay under
#: when the queue's own limit cannot be read).
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
#: A FIFO queue drops a message whose deduplication id it saw within this window.
FIFO_DEDUP_WINDOW_S = 300.0
#: MessageGroupId and MessageDeduplicationId are at most this many characters.
MAX_FIFO_ID_CHARS = 128
