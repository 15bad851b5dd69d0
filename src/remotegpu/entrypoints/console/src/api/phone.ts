/** The signed-in user's phone number for SMS notifications (verified by code). */
import { http } from './client'

export interface Phone {
  number: string | null
  verified_at: string | null
  pending_number: string | null
  code_expires_at: string | null
  sms_enabled: boolean
}

export const phoneApi = {
  get: () => http.get<Phone>('/api/v1/users/me/phone'),
  start: (number: string) => http.put<Phone>('/api/v1/users/me/phone', { number }),
  verify: (code: string) => http.post<Phone>('/api/v1/users/me/phone/verify', { code }),
  remove: () => http.delete<void>('/api/v1/users/me/phone'),
}
